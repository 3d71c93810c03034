"""Units and physical constants.

colliderlab's internal units: energy, momentum and mass in GeV; length in mm; time in ns;
angles in rad; cross sections in pb. Convert through these named constants only.
"""

GeV = 1.0
MeV = 1.0e-3
TeV = 1.0e3

mm = 1.0
cm = 10.0
m = 1000.0
um = 1.0e-3

ns = 1.0

#: Speed of light in mm/ns (Pythia gives times in mm/c).
C_MM_PER_NS = 299.792458

pb = 1.0
fb = 1.0e-3
#: Pythia 8 gives cross sections in mb; 1 mb = 1e9 pb.
MB_TO_PB = 1.0e9
