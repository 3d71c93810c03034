"""Sampling-calorimeter media: absorber + active layers and their effective shower constants.

Pure materials (:class:`Medium`) carry the values of the PDG tables "Atomic and Nuclear
Properties of Materials" (https://pdg.lbl.gov/2024/AtomicNuclearProperties/, RPP 2024):
Z, A, density, radiation length X0, Moliere radius R_M, critical energy E_c (for electrons,
Rossi's definition), nuclear interaction length lambda_I and the minimum ionisation loss.
The ``particle`` package, used elsewhere for particle data, holds no material properties,
so these numbers are written here with their source.

A :class:`SamplingCalorimeter` is a periodic stack of one absorber and one active layer. Its
effective constants follow the usual rules for a layered medium (PDG review "Passage of
particles through matter", section on mixtures; Grindhammer & Peters, arXiv:hep-ex/0001020):

- ``1 / X0 = sum_j f_j / X0_j`` and ``1 / lambda = sum_j f_j / lambda_j`` with ``f_j`` the
  thickness fractions;
- ``1 / R_M = (1 / E_s) sum_j f_j E_c,j / X0_j`` with ``E_s = 21.2 MeV``, and
  ``E_c = X0 sum_j f_j E_c,j / X0_j``;
- ``Z_eff`` weighted by mass per area (as GFlash does);
- the mip sampling fraction ``f_mip = d_act dE/dx_act / sum_j d_j dE/dx_j``, the electron
  response relative to a mip ``e/mip = 1 / (1 + 0.007 (Z_abs - Z_act))`` (Grindhammer &
  Peters' ``e-hat``) and the electron sampling fraction ``f_e = (e/mip) f_mip``;
- the sampling frequency ``F_S^-1 = (d_abs + d_act) / X0`` (period in X0), which shifts the
  GFlash profile parameters from their homogeneous values;
- the stochastic term ``a = 2.7% sqrt(d_act / f_mip)`` (d_act in mm; the rule of Livan and
  Wigmans quoted in the PDG review "Calorimetry") unless a measured value is given.

Lengths are in mm, energies in MeV unless a name says otherwise.
"""

from __future__ import annotations

import dataclasses
import math

from colliderlab.core.registry import lookup, names, register

#: Scale energy of multiple scattering, MeV (PDG: E_s = m_e c^2 sqrt(4 pi / alpha)).
E_S = 21.2
#: Coefficient of the sampling-fluctuation rule a = 2.7% sqrt(d / f_mip) (d in mm).
WIGMANS_COEFFICIENT = 0.027

REGISTRY_KIND = "calo material"


@dataclasses.dataclass(frozen=True)
class Medium:
    """A pure material (PDG Atomic and Nuclear Properties, RPP 2024).

    ``radiation_length``, ``moliere_radius`` and ``interaction_length`` in mm,
    ``critical_energy`` in MeV, ``density`` in g/cm3, ``dedx_min`` (minimum ionisation) in
    MeV/mm.
    """

    name: str
    Z: float
    A: float
    density: float
    radiation_length: float
    moliere_radius: float
    critical_energy: float
    interaction_length: float
    dedx_min: float


def _medium(name, Z, A, density, x0_gcm2, rm_mm, ec_mev, lam_gcm2, dedx_mev_cm2_g) -> Medium:
    """A :class:`Medium` from the PDG table columns (lengths in g/cm2, dE/dx in MeV cm2/g)."""
    return Medium(
        name=name,
        Z=Z,
        A=A,
        density=density,
        radiation_length=10.0 * x0_gcm2 / density,
        moliere_radius=rm_mm,
        critical_energy=ec_mev,
        interaction_length=10.0 * lam_gcm2 / density,
        dedx_min=dedx_mev_cm2_g * density / 10.0,
    )


# PDG Atomic and Nuclear Properties (pdg.lbl.gov/2024/AtomicNuclearProperties): Z, A, density
# (g/cm3), X0 (g/cm2), R_M (mm), E_c for e- (MeV), lambda_I (g/cm2), <-dE/dx>_min (MeV cm2/g).
LEAD = _medium("Pb", 82, 207.2, 11.35, 6.37, 16.02, 7.43, 199.6, 1.122)
TUNGSTEN = _medium("W", 74, 183.84, 19.3, 6.76, 9.327, 7.97, 191.9, 1.145)
LIQUID_ARGON = _medium("LAr", 18, 39.948, 1.396, 19.55, 90.43, 32.84, 119.7, 1.519)
SILICON = _medium("Si", 14, 28.0855, 2.329, 21.82, 48.82, 40.19, 108.4, 1.664)


@dataclasses.dataclass(frozen=True)
class SamplingCalorimeter:
    """A periodic stack of ``absorber`` and ``active`` layers (thicknesses in mm).

    ``stochastic_term`` (a, in sqrt(GeV)) defaults to the Livan-Wigmans rule
    ``2.7% sqrt(d_act / f_mip)``; ``constant_term`` (b) is the local response
    non-uniformity; ``h_over_e`` the response to the non-electromagnetic part of hadron
    showers relative to electrons (1 / (e/h), non-compensation); ``hadronic_stochastic_term``
    the intrinsic + sampling fluctuation of that part, in sqrt(GeV) of its energy.
    """

    name: str
    absorber: Medium
    active: Medium
    absorber_thickness: float
    active_thickness: float
    constant_term: float
    h_over_e: float
    hadronic_stochastic_term: float
    stochastic_term_override: float | None = None
    description: str = ""

    # ------------------------------------------------------------------ geometry of a period
    @property
    def period(self) -> float:
        """Thickness of one absorber + active period, mm."""
        return self.absorber_thickness + self.active_thickness

    @property
    def _fractions(self) -> tuple[tuple[float, Medium], tuple[float, Medium]]:
        return (
            (self.absorber_thickness / self.period, self.absorber),
            (self.active_thickness / self.period, self.active),
        )

    # ------------------------------------------------------------------ effective constants
    @property
    def radiation_length(self) -> float:
        """Effective radiation length X0 of the stack, mm."""
        return 1.0 / sum(f / m.radiation_length for f, m in self._fractions)

    @property
    def interaction_length(self) -> float:
        """Effective nuclear interaction length lambda_I of the stack, mm."""
        return 1.0 / sum(f / m.interaction_length for f, m in self._fractions)

    @property
    def _ec_over_x0(self) -> float:
        return sum(f * m.critical_energy / m.radiation_length for f, m in self._fractions)

    @property
    def moliere_radius(self) -> float:
        """Effective Moliere radius R_M, mm."""
        return E_S / self._ec_over_x0

    @property
    def critical_energy(self) -> float:
        """Effective critical energy E_c, MeV."""
        return self.radiation_length * self._ec_over_x0

    @property
    def z_eff(self) -> float:
        """Effective Z, weighted by mass per area (GFlash convention)."""
        w = [(f * m.density, m) for f, m in self._fractions]
        total = sum(x for x, _ in w)
        return sum(x * m.Z for x, m in w) / total

    @property
    def dedx_mip(self) -> float:
        """Average minimum-ionisation energy loss in the stack, MeV/mm."""
        return sum(f * m.dedx_min for f, m in self._fractions)

    # ------------------------------------------------------------------ sampling
    @property
    def mip_fraction(self) -> float:
        """Fraction of a minimum-ionising particle's loss deposited in the active layers."""
        act = self.active_thickness * self.active.dedx_min
        return act / (act + self.absorber_thickness * self.absorber.dedx_min)

    @property
    def e_over_mip(self) -> float:
        """Electron response relative to a mip, 1 / (1 + 0.007 (Z_abs - Z_act))."""
        return 1.0 / (1.0 + 0.007 * (self.absorber.Z - self.active.Z))

    @property
    def sampling_fraction(self) -> float:
        """Fraction of an electron shower's energy seen in the active layers, (e/mip) f_mip."""
        return self.e_over_mip * self.mip_fraction

    @property
    def inverse_sampling_frequency(self) -> float:
        """F_S^-1 = period / X0 (Grindhammer-Peters' sampling frequency, inverted)."""
        return self.period / self.radiation_length

    @property
    def stochastic_term(self) -> float:
        """EM stochastic term a (sigma/E = a / sqrt(E/GeV)), in sqrt(GeV)."""
        if self.stochastic_term_override is not None:
            return self.stochastic_term_override
        return WIGMANS_COEFFICIENT * math.sqrt(self.active_thickness / self.mip_fraction)

    def summary(self) -> dict[str, float | str]:
        """The effective constants as a dict (lengths mm, energies MeV)."""
        return {
            "name": self.name,
            "absorber": f"{self.absorber_thickness} mm {self.absorber.name}",
            "active": f"{self.active_thickness} mm {self.active.name}",
            "X0_mm": self.radiation_length,
            "R_M_mm": self.moliere_radius,
            "E_c_MeV": self.critical_energy,
            "lambda_I_mm": self.interaction_length,
            "Z_eff": self.z_eff,
            "f_mip": self.mip_fraction,
            "e_over_mip": self.e_over_mip,
            "sampling_fraction": self.sampling_fraction,
            "stochastic_term": self.stochastic_term,
            "constant_term": self.constant_term,
            "h_over_e": self.h_over_e,
        }


PB_LAR = register(REGISTRY_KIND, "pb_lar")(
    SamplingCalorimeter(
        name="pb_lar",
        absorber=LEAD,
        active=LIQUID_ARGON,
        # ATLAS EM barrel (|eta| < 0.8): 1.53 mm lead, 2 x 2.1 mm liquid-argon gap; the steel
        # cladding and the kapton electrodes are left out.
        absorber_thickness=1.53,
        active_thickness=4.2,
        # ATLAS EM barrel test beams: b ~ 0.7% (local response non-uniformity).
        constant_term=0.007,
        # e/h ~ 1.5 for lead/liquid argon (non-compensating).
        h_over_e=0.65,
        hadronic_stochastic_term=0.8,
        description="ATLAS-like lead / liquid-argon sampling calorimeter",
    )
)

W_SI = register(REGISTRY_KIND, "w_si")(
    SamplingCalorimeter(
        name="w_si",
        absorber=TUNGSTEN,
        active=SILICON,
        # CaloChallenge datasets 2 and 3 (Geant4 example Par04): 90 layers of 1.4 mm W and
        # 0.3 mm Si.
        absorber_thickness=1.4,
        active_thickness=0.3,
        # The Wigmans rule gives 7.8% for 0.3 mm Si, but it underestimates thin silicon: the
        # CALICE Si-W ECAL (0.5 mm Si, 1.4/2.8/4.2 mm W) measured 16.6%/sqrt(E) (+) 1.1%;
        # scaled to 1.4 mm W throughout (a ~ sqrt(absorber thickness)) that is ~12%.
        stochastic_term_override=0.12,
        constant_term=0.01,
        # Silicon sees no neutron recoils: strongly non-compensating.
        h_over_e=0.6,
        hadronic_stochastic_term=0.8,
        description="CaloChallenge ds2/ds3-like tungsten / silicon sampling calorimeter",
    )
)


def get_material(name: str) -> SamplingCalorimeter:
    """The registered sampling calorimeter ``name`` (``pb_lar``, ``w_si``)."""
    return lookup(REGISTRY_KIND, name)


def material_names() -> list[str]:
    """Names of the registered sampling calorimeters."""
    return names(REGISTRY_KIND)
