set -x
CL=/tmp/venvprobe/bin/colliderlab
/usr/bin/time -f "%e s wall, %M KB" $CL dataset calosim --showers 20000 --data-dir w1 --workers 1 --no-progress
/usr/bin/time -f "%e s wall, %M KB" $CL dataset calosim --showers 20000 --data-dir w2 --workers 2 --no-progress
cmp <(h5dump -d showers w1/calosim/*.h5 2>/dev/null | md5sum) <(h5dump -d showers w2/calosim/*.h5 2>/dev/null | md5sum) && echo same-showers
/usr/bin/time -f "%e s wall, %M KB" $CL dataset tracking --events 4 --pileup 200 --data-dir w1 --workers 1 --no-progress
/usr/bin/time -f "%e s wall, %M KB" $CL dataset tracking --events 4 --pileup 200 --data-dir w2 --workers 2 --no-progress
for f in w1/tracking/*/event*; do cmp <(zcat $f) <(zcat w2/tracking/${f#w1/tracking/}) || echo DIFF $f; done; echo compared
