"""The catalogue of physics processes: each a documented set of Pythia 8 settings.

A process has typed parameters (masses, pTHat ranges, decay modes, gun energies) with
defaults; :func:`get_process` looks one up by name and :meth:`Process.resolve` turns
parameter values into the Pythia settings, an optional process-level veto and, for particle
guns, the gun's kinematics. Raw Pythia settings can be added on top (``--set Key=Value``).

Energies and masses are in GeV, angles in rad.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from colliderlab.core.errors import ConfigError, did_you_mean
from colliderlab.core.registry import lookup, names, register

#: Default centre-of-mass energy: LHC Run 3, in GeV.
DEFAULT_ECM = 13600.0


@dataclasses.dataclass(frozen=True)
class Param:
    """A process parameter: default value, one-line doc, allowed choices (for strings)."""

    default: float | int | str
    doc: str
    choices: tuple[str, ...] | None = None

    def parse(self, name: str, value: Any) -> float | int | str:
        """Convert ``value`` (often a string from the command line) to this parameter's type."""
        kind = type(self.default)
        try:
            out = kind(value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"process parameter {name!r} expects a {kind.__name__} ({self.doc}); got {value!r}."
            ) from None
        if self.choices is not None and out not in self.choices:
            raise ConfigError(
                f"process parameter {name!r} must be one of {', '.join(self.choices)}; got "
                f"{out!r}.{did_you_mean(str(out), self.choices)}"
            )
        return out


@dataclasses.dataclass(frozen=True)
class GunSpec:
    """A single-particle gun: |pdgId|, energy range (GeV), pseudorapidity range, charge sign."""

    pid: int
    e_min: float
    e_max: float
    spectrum: str  # "log" (log-uniform) or "flat"
    eta_min: float
    eta_max: float
    charge: str  # "both", "plus" or "minus" (for neutral particles: ignored)


@dataclasses.dataclass(frozen=True)
class ProcessSpec:
    """What a resolved process hands to the generator."""

    settings: tuple[str, ...]
    veto: str | None = None
    gun: GunSpec | None = None


@dataclasses.dataclass(frozen=True)
class Process:
    """A named physics process of the catalogue."""

    name: str
    description: str
    params: Mapping[str, Param]
    build: Callable[[Mapping[str, Any]], ProcessSpec]

    def resolve(
        self, values: Mapping[str, Any] | None = None
    ) -> tuple[dict[str, Any], ProcessSpec]:
        """Parameter values (defaults filled in, types checked) and the Pythia spec."""
        values = dict(values or {})
        unknown = [k for k in values if k not in self.params]
        if unknown:
            valid = ", ".join(sorted(self.params)) or "none"
            raise ConfigError(
                f"process {self.name!r} has no parameter {unknown[0]!r}."
                f"{did_you_mean(unknown[0], self.params)} Its parameters: {valid}."
            )
        resolved = {
            k: p.parse(k, values[k]) if k in values else p.default for k, p in self.params.items()
        }
        return resolved, self.build(resolved)


def _ecm() -> dict[str, Param]:
    return {"ecm": Param(DEFAULT_ECM, "proton-proton centre-of-mass energy in GeV")}


def _beams(p: Mapping[str, Any]) -> list[str]:
    return [f"Beams:eCM = {float(p['ecm'])}"]


def process(name: str, description: str, params: Mapping[str, Param] | None = None):
    """Register a process builder ``f(params) -> ProcessSpec`` under ``name``."""

    def deco(fn: Callable[[Mapping[str, Any]], ProcessSpec]):
        all_params = (
            {**_ecm(), **(params or {})} if not name.startswith("gun_") else dict(params or {})
        )
        register("process", name)(Process(name, description, all_params, fn))
        return fn

    return deco


def get_process(name: str) -> Process:
    """The registered process ``name`` (an unknown name lists the valid ones)."""
    return lookup("process", name)


def list_processes() -> list[Process]:
    """All registered processes, sorted by name."""
    return [get_process(n) for n in names("process")]


# --------------------------------------------------------------------------- top quarks
_TTBAR = ["Top:gg2ttbar = on", "Top:qqbar2ttbar = on"]
_W_HAD = "24:onMode = off", "24:onIfAny = 1 2 3 4 5"


@process("ttbar", "top-quark pair production (gg, qqbar -> ttbar), all decays, mt = 172.5 GeV")
def _ttbar(p):
    return ProcessSpec((*_beams(p), *_TTBAR, "6:m0 = 172.5"))


@process("ttbar_allhad", "ttbar with both W -> qq' (all-hadronic: six-jet final state)")
def _ttbar_allhad(p):
    return ProcessSpec((*_beams(p), *_TTBAR, "6:m0 = 172.5", *_W_HAD))


@process(
    "ttbar_semilep",
    "ttbar with exactly one W -> e/mu nu and one W -> qq' (lepton + jets)",
)
def _ttbar_semilep(p):
    # W -> tau decays are closed; the veto keeps the events with one e/mu W and one hadronic W.
    return ProcessSpec(
        (*_beams(p), *_TTBAR, "6:m0 = 172.5", "24:onMode = off", "24:onIfAny = 1 2 3 4 5 11 13"),
        veto="one_leptonic_w",
    )


@process(
    "zprime_ttbar",
    "Z' -> ttbar (sequential-SM-like Z', no gamma*/Z interference); boosted tops",
    {"mass": Param(2000.0, "Z' mass in GeV")},
)
def _zprime_ttbar(p):
    m = float(p["mass"])
    return ProcessSpec(
        (
            *_beams(p),
            "NewGaugeBoson:ffbar2gmZZprime = on",
            "Zprime:gmZmode = 3",
            f"32:m0 = {m}",
            "32:onMode = off",
            "32:onIfAny = 6",
            f"PhaseSpace:mHatMin = {0.5 * m}",
            f"PhaseSpace:mHatMax = {1.5 * m}",
            "6:m0 = 172.5",
        )
    )


# --------------------------------------------------------------------------- QCD and V+jets
@process(
    "qcd_dijet",
    "QCD 2 -> 2 (all HardQCD processes) in a pTHat range: the multijet background",
    {
        "pthat_min": Param(30.0, "minimum pTHat of the hard scattering, GeV"),
        "pthat_max": Param(-1.0, "maximum pTHat, GeV (-1: no upper limit)"),
    },
)
def _qcd(p):
    lo, hi = float(p["pthat_min"]), float(p["pthat_max"])
    if lo <= 0:
        raise ConfigError(f"qcd_dijet needs pthat_min > 0 GeV (QCD diverges at 0); got {lo}.")
    if 0 < hi <= lo:
        raise ConfigError(f"qcd_dijet needs pthat_max > pthat_min (or -1); got {lo}, {hi}.")
    return ProcessSpec(
        (
            *_beams(p),
            "HardQCD:all = on",
            f"PhaseSpace:pTHatMin = {lo}",
            f"PhaseSpace:pTHatMax = {hi}",
        )
    )


_W_DECAYS = {
    "lnu": "11 13 15",
    "enu": "11",
    "munu": "13",
    "taunu": "15",
    "had": "1 2 3 4 5",
}
_Z_DECAYS = {
    "nunu": "12 14 16",
    "ll": "11 13",
    "ee": "11",
    "mumu": "13",
    "tautau": "15",
    "had": "1 2 3 4 5",
}


def _decay(pid: int, mode: str, table: Mapping[str, str]) -> list[str]:
    if mode == "inclusive":
        return []
    return [f"{pid}:onMode = off", f"{pid}:onIfAny = {table[mode]}"]


@process(
    "wjets",
    "W + jet (qqbar -> W g, q g -> W q), W -> l nu by default",
    {
        "decay": Param("lnu", "W decay", (*_W_DECAYS, "inclusive")),
        "pthat_min": Param(20.0, "minimum pTHat, GeV"),
    },
)
def _wjets(p):
    return ProcessSpec(
        (
            *_beams(p),
            "WeakBosonAndParton:qqbar2Wg = on",
            "WeakBosonAndParton:qg2Wq = on",
            f"PhaseSpace:pTHatMin = {float(p['pthat_min'])}",
            *_decay(24, str(p["decay"]), _W_DECAYS),
        )
    )


@process(
    "zjets",
    "Z + jet (qqbar -> Z g, q g -> Z q), pure Z, Z -> nu nu by default (as for quark/gluon jets)",
    {
        "decay": Param("nunu", "Z decay", (*_Z_DECAYS, "inclusive")),
        "pthat_min": Param(20.0, "minimum pTHat, GeV"),
    },
)
def _zjets(p):
    return ProcessSpec(
        (
            *_beams(p),
            "WeakBosonAndParton:qqbar2gmZg = on",
            "WeakBosonAndParton:qg2gmZq = on",
            "WeakZ0:gmZmode = 2",
            f"PhaseSpace:pTHatMin = {float(p['pthat_min'])}",
            *_decay(23, str(p["decay"]), _Z_DECAYS),
        )
    )


def _drell_yan(p: Mapping[str, Any], decays: str) -> ProcessSpec:
    return ProcessSpec(
        (
            *_beams(p),
            "WeakSingleBoson:ffbar2gmZ = on",
            "WeakZ0:gmZmode = 2",
            "PhaseSpace:mHatMin = 50.",
            "23:onMode = off",
            f"23:onIfAny = {decays}",
        )
    )


@process(
    "z_ll",
    "Drell-Yan Z -> ee / mumu (pure Z, mHat > 50 GeV)",
    {"flavour": Param("emu", "lepton flavour", ("emu", "e", "mu"))},
)
def _z_ll(p):
    return _drell_yan(p, {"emu": "11 13", "e": "11", "mu": "13"}[str(p["flavour"])])


@process("z_tautau", "Drell-Yan Z -> tau tau (pure Z, mHat > 50 GeV): the H -> tautau background")
def _z_tautau(p):
    return _drell_yan(p, "15")


# --------------------------------------------------------------------------- Higgs
@process(
    "h_tautau",
    "Higgs -> tau tau from gluon fusion and vector-boson fusion, mH = 125 GeV",
    {
        "production": Param("both", "production modes", ("both", "ggf", "vbf")),
        "mass": Param(125.0, "Higgs mass in GeV"),
    },
)
def _h_tautau(p):
    prod = str(p["production"])
    modes = []
    if prod in ("both", "ggf"):
        modes.append("HiggsSM:gg2H = on")
    if prod in ("both", "vbf"):
        modes += ["HiggsSM:ff2Hff(t:ZZ) = on", "HiggsSM:ff2Hff(t:WW) = on"]
    return ProcessSpec(
        (
            *_beams(p),
            *modes,
            f"25:m0 = {float(p['mass'])}",
            "25:onMode = off",
            "25:onIfMatch = 15 -15",
        )
    )


@process(
    "vh_bb",
    "associated ZH / WH production with H -> bb, Z -> ll/nunu, W -> l nu",
)
def _vh_bb(p):
    return ProcessSpec(
        (
            *_beams(p),
            "HiggsSM:ffbar2HZ = on",
            "HiggsSM:ffbar2HW = on",
            "25:m0 = 125.",
            "25:onMode = off",
            "25:onIfMatch = 5 -5",
            "23:onMode = off",
            "23:onIfAny = 11 12 13 14 15 16",
            "24:onMode = off",
            "24:onIfAny = 11 13 15",
        )
    )


# --------------------------------------------------------------------------- new physics
#: Particle ids given to the LHC Olympics X and Y bosons (free PDG range for new states).
X_ID, Y_ID = 9000001, 9000002


@process(
    "wprime_xy",
    "W' -> X Y with X -> qq and Y -> qq (LHC Olympics 2020 R&D signal; masses in GeV)",
    {
        "mw": Param(3500.0, "W' mass in GeV"),
        "mx": Param(500.0, "X mass in GeV"),
        "my": Param(100.0, "Y mass in GeV"),
    },
)
def _wprime_xy(p):
    mw, mx, my = float(p["mw"]), float(p["mx"]), float(p["my"])
    if mx + my >= mw:
        raise ConfigError(
            f"wprime_xy needs mx + my < mw (the decay must be open); got {mx}+{my} >= {mw}."
        )
    wx, wy = 0.01 * mx, 0.01 * my
    return ProcessSpec(
        (
            *_beams(p),
            "NewGaugeBoson:ffbar2Wprime = on",
            f"34:m0 = {mw}",
            f"34:mWidth = {0.01 * mw}",
            "34:doForceWidth = on",
            f"PhaseSpace:mHatMin = {0.8 * mw}",
            f"PhaseSpace:mHatMax = {1.2 * mw}",
            # X: neutral, colourless scalar decaying to quark pairs.
            f"{X_ID}:new = X void 1 0 0 {mx} {wx} {mx - 10 * wx} {mx + 10 * wx} 0.",
            f"{X_ID}:isResonance = on",
            *(f"{X_ID}:addChannel = 1 0.2 101 {q} {-q}" for q in (1, 2, 3, 4, 5)),
            # Y+: charged scalar decaying to up-type + anti-down-type quarks.
            f"{Y_ID}:new = Y+ Y- 1 3 0 {my} {wy} {my - 10 * wy} {my + 10 * wy} 0.",
            f"{Y_ID}:isResonance = on",
            f"{Y_ID}:addChannel = 1 0.5 101 2 -1",
            f"{Y_ID}:addChannel = 1 0.5 101 4 -3",
            "34:onMode = off",
            f"34:addChannel = 1 1.0 101 {X_ID} {Y_ID}",
        )
    )


# --------------------------------------------------------------------------- soft QCD
@process("minbias", "minimum bias: all inelastic soft-QCD processes (the pile-up model)")
def _minbias(p):
    return ProcessSpec((*_beams(p), "SoftQCD:inelastic = on"))


# --------------------------------------------------------------------------- guns
def _gun_params(e_min: float, e_max: float) -> dict[str, Param]:
    return {
        "e_min": Param(e_min, "minimum energy in GeV"),
        "e_max": Param(e_max, "maximum energy in GeV"),
        "spectrum": Param("log", "energy spectrum", ("log", "flat")),
        "eta_min": Param(-2.5, "minimum pseudorapidity"),
        "eta_max": Param(2.5, "maximum pseudorapidity"),
        "charge": Param("both", "charge sign", ("both", "plus", "minus")),
    }


def _gun(pid: int):
    def build(p):
        e_min, e_max = float(p["e_min"]), float(p["e_max"])
        if not 0 < e_min <= e_max:
            raise ConfigError(f"gun energies need 0 < e_min <= e_max (GeV); got {e_min}, {e_max}.")
        if not float(p["eta_min"]) <= float(p["eta_max"]):
            raise ConfigError("gun needs eta_min <= eta_max.")
        gun = GunSpec(
            pid,
            e_min,
            e_max,
            str(p["spectrum"]),
            float(p["eta_min"]),
            float(p["eta_max"]),
            str(p["charge"]),
        )
        return ProcessSpec(("ProcessLevel:all = off",), gun=gun)

    return build


for _name, _pid, _what in (
    ("gun_e", 11, "electron"),
    ("gun_gamma", 22, "photon"),
    ("gun_pi", 211, "charged pion"),
    ("gun_mu", 13, "muon"),
):
    process(
        _name,
        f"single {_what} gun, energy log-uniform in [e_min, e_max], flat in eta and phi",
        _gun_params(1.0, 1000.0),
    )(_gun(_pid))
