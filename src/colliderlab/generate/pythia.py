"""Thin, careful wrapper around a ``pythia8mc.Pythia`` instance.

* Settings are read one by one; a setting that Pythia rejects raises
  :class:`~colliderlab.core.errors.PythiaSettingError` quoting Pythia's own message (Pythia
  writes to the C-level stdout, so it is captured at the file-descriptor level).
* Process-level vetoes (e.g. "exactly one leptonic W" for semileptonic ttbar) are UserHooks
  that run before the shower, so vetoed events cost almost nothing; Pythia's cross-section
  estimate then includes the veto efficiency.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from colliderlab.core.capture import capture_stdout
from colliderlab.core.errors import PythiaSettingError

#: Settings applied before any process setting: silence Pythia, and leave particles with
#: c*tau > 10 mm (K0S, Lambda, Sigma, Xi, Omega, charged pions and kaons) undecayed, as in the
#: generator setups of the LHC experiments: their decays belong to the detector simulation.
BASE_SETTINGS = (
    "Print:quiet = on",
    "Next:numberCount = 0",
    "Next:numberShowEvent = 0",
    "ParticleDecays:limitTau0 = on",
    "ParticleDecays:tau0Max = 10.",
)


def _pythia_message(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " ".join(lines) if lines else "(Pythia printed no message)"


# ----------------------------------------------------------------------------- vetoes
def _one_leptonic_w(process) -> bool:
    """Veto unless exactly one W decays to e/mu nu and one to quarks (semileptonic ttbar)."""
    n_lep = n_had = 0
    for i in range(process.size()):
        q = process[i]
        if abs(q.status()) != 23 or abs(process[q.mother1()].id()) != 24:
            continue
        a = q.idAbs()
        if a in (11, 13):
            n_lep += 1
        elif a <= 5:
            n_had += 1
    return not (n_lep == 1 and n_had == 2)


#: Process-level vetoes by name: ``f(process_record) -> True`` to reject the event.
VETOES: dict[str, Callable[[object], bool]] = {"one_leptonic_w": _one_leptonic_w}


def _make_hook(veto: Callable[[object], bool]):
    import pythia8mc

    class _ProcessVeto(pythia8mc.UserHooks):
        def __init__(self) -> None:
            pythia8mc.UserHooks.__init__(self)

        def canVetoProcessLevel(self) -> bool:
            return True

        def doVetoProcessLevel(self, process) -> bool:
            return veto(process)

    return _ProcessVeto()


class Generator:
    """A ``pythia8mc.Pythia`` instance together with the hook objects it points to."""

    def __init__(self, pythia, hook=None) -> None:
        self.pythia = pythia
        self._hook = hook  # Pythia holds a raw pointer: the hook must outlive it

    @property
    def info(self):
        return self.pythia.infoPython()


def make_pythia(
    settings: Sequence[str], seed: int | None = None, veto: str | None = None, init: bool = True
) -> Generator:
    """A configured (and by default initialised) Pythia 8 :class:`Generator`.

    Parameters
    ----------
    settings : Pythia setting strings ``"Key = Value"``, applied in order after the base ones.
    seed : Pythia random seed in [1, 900000000]; ``None`` leaves Pythia's default.
    veto : name of a process-level veto in :data:`VETOES`.
    init : call ``Pythia.init()``; a failed init raises with Pythia's message.
    """
    import pythia8mc

    all_settings = list(BASE_SETTINGS)
    if seed is not None:
        all_settings += ["Random:setSeed = on", f"Random:seed = {int(seed)}"]
    all_settings += list(settings)
    with capture_stdout() as built:
        pythia = pythia8mc.Pythia("", False)
    for s in all_settings:
        with capture_stdout() as text:
            ok = pythia.readString(s)
        if not ok and s in BASE_SETTINGS:
            raise PythiaSettingError(
                f"Pythia could not read its settings database ({_pythia_message(built[0])}): "
                "its data files (share/Pythia8/xmldoc of the pythia8mc installation) were not "
                "found. Reinstall pythia8mc into this environment, or point the environment "
                "variable PYTHIA8DATA at that xmldoc folder."
            )
        if not ok:
            raise PythiaSettingError(
                f"Pythia rejected the setting {s!r}: {_pythia_message(text[0])}. Check the key "
                "and value against the Pythia 8 manual (pythia.org, 'Settings'), or remove it."
            )
    hook = None
    if veto is not None:
        hook = _make_hook(VETOES[veto])
        pythia.setUserHooksPtr(hook)
    if init:
        with capture_stdout() as text:
            ok = pythia.init()
        if not ok:
            raise PythiaSettingError(
                "Pythia could not initialise with the settings "
                f"{'; '.join(settings)}: {_pythia_message(text[0])}"
            )
    return Generator(pythia, hook)
