CL=/tmp/venvprobe/bin/colliderlab
echo "calosim 20000 showers, --workers 2 (session 22, after the allocator fix)"
/usr/bin/time -f "%e s wall, %M KB" $CL dataset calosim --showers 20000 --data-dir w2 --workers 2 --no-progress
echo "calosim 20000 showers, --workers 1 (again, after)"
rm -rf w3; /usr/bin/time -f "%e s wall, %M KB" $CL dataset calosim --showers 20000 --data-dir w3 --workers 1 --no-progress
/tmp/venvprobe/bin/python - <<'P'
import numpy as np
from colliderlab.calosim.io import read_calochallenge_h5
a = read_calochallenge_h5("w1/calosim/atlas5-gamma-20000-seed1.h5", geometry="atlas5")
b = read_calochallenge_h5("w2/calosim/atlas5-gamma-20000-seed1.h5", geometry="atlas5")
print("identical showers and energies:", np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]))
P
