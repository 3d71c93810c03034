"""Column names of the HiggsML challenge format (Adam-Bourdarios et al., 2014).

The 30 features come in the order of the challenge files: 13 derived quantities (``DER_*``,
computed from the primitives by the physicists of the challenge) then 17 primitives
(``PRI_*``: the measured momenta of the lepton, the hadronic tau, the jets and the missing
transverse momentum). An undefined value (a jet variable of an event with too few jets, a
failed mass estimate) is the sentinel :data:`UNDEFINED` = -999.0.

The "Baldi-style" split (Baldi, Sadowski, Whiteson, arXiv:1402.4735 and arXiv:1410.3469)
separates the low-level inputs (:data:`LOW_LEVEL`, the primitives) from the high-level ones
(:data:`HIGH_LEVEL`, the derived quantities).
"""

from __future__ import annotations

#: The value of an undefined feature.
UNDEFINED = -999.0

DERIVED = (
    "DER_mass_MMC",
    "DER_mass_transverse_met_lep",
    "DER_mass_vis",
    "DER_pt_h",
    "DER_deltaeta_jet_jet",
    "DER_mass_jet_jet",
    "DER_prodeta_jet_jet",
    "DER_deltar_tau_lep",
    "DER_pt_tot",
    "DER_sum_pt",
    "DER_pt_ratio_lep_tau",
    "DER_met_phi_centrality",
    "DER_lep_eta_centrality",
)
PRIMITIVES = (
    "PRI_tau_pt",
    "PRI_tau_eta",
    "PRI_tau_phi",
    "PRI_lep_pt",
    "PRI_lep_eta",
    "PRI_lep_phi",
    "PRI_met",
    "PRI_met_phi",
    "PRI_met_sumet",
    "PRI_jet_num",
    "PRI_jet_leading_pt",
    "PRI_jet_leading_eta",
    "PRI_jet_leading_phi",
    "PRI_jet_subleading_pt",
    "PRI_jet_subleading_eta",
    "PRI_jet_subleading_phi",
    "PRI_jet_all_pt",
)
#: The 30 features, in file order.
FEATURES = DERIVED + PRIMITIVES
LOW_LEVEL = PRIMITIVES
HIGH_LEVEL = DERIVED

#: Features that are -999 exactly when the event has no jet (PRI_jet_num == 0) ...
NEEDS_ONE_JET = ("PRI_jet_leading_pt", "PRI_jet_leading_eta", "PRI_jet_leading_phi")
#: ... and exactly when it has fewer than two jets (PRI_jet_num <= 1).
NEEDS_TWO_JETS = (
    "DER_deltaeta_jet_jet",
    "DER_mass_jet_jet",
    "DER_prodeta_jet_jet",
    "DER_lep_eta_centrality",
    "PRI_jet_subleading_pt",
    "PRI_jet_subleading_eta",
    "PRI_jet_subleading_phi",
)
#: Features that may be -999 in any event (the mass estimate can fail).
MAY_BE_UNDEFINED = ("DER_mass_MMC",)

#: Columns of the Kaggle files (training.csv) and of the CERN Open Data file.
KAGGLE_COLUMNS = ("EventId", *FEATURES, "Weight", "Label")
OPENDATA_COLUMNS = (*KAGGLE_COLUMNS, "KaggleSet", "KaggleWeight")
#: KaggleSet codes of the Open Data file: t = training, b = public leaderboard,
#: v = private leaderboard, u = unused.
KAGGLE_SETS = ("t", "b", "v", "u")

#: Columns of the Kaggle test file (test.csv): no weight, no label.
KAGGLE_TEST_COLUMNS = ("EventId", *FEATURES)
#: Optional last column of the files that colliderlab writes: the generated physics process
#: of each event (``"h_tautau"``, ``"z_tautau"``...). Not part of the challenge files.
PROCESS_COLUMN = "Process"
