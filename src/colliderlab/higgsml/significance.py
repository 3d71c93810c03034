"""Expected discovery significance of a classifier score: binned likelihoods with pyhf.

A classifier is only as good as the physics result it buys. This module turns the score of a
H -> tautau classifier into the expected discovery significance Z0 of a binned likelihood fit
of the score distribution, and compares analyses (cut-based, BDT, DNN...) by the luminosity
the reference analysis would need to match each of them, as in the table of Radovic et al.,
"Machine learning at the energy and intensity frontiers of particle physics", Nature 560
(2018) 41, doi:10.1038/s41586-018-0361-2.

The statistical model (HistFactory, via pyhf, Heinrich et al., doi:10.21105/joss.02823):

* one channel ``"score"``; the signal sample scaled by the parameter of interest ``mu``;
* one sample per background process, each with a normalisation uncertainty ``norm_<process>``
  (a ``normsys`` modifier, hi = 1 + unc, lo = 1 - unc, Gaussian-constrained);
* optionally the Monte Carlo statistical uncertainty of the background prediction: one shared
  ``staterror`` modifier ``mcstat`` (Barlow-Beeston "lite": one constrained factor per bin for
  the summed background). The signal carries none: it does not enter the background-only fit
  that the discovery test statistic compares to;
* the "observation" is the Asimov data set of signal plus background (mu = 1, nuisance
  parameters at their nominal values), so Z0 is the *expected* (median) significance.

Z0 comes from the profile-likelihood test statistic q0 in the asymptotic approximation
(Cowan, Cranmer, Gross, Vitells, arXiv:1007.1727): p0 = ``pyhf.infer.hypotest(0, ...,
test_stat="q0")`` and Z0 = Phi^-1(1 - p0) = sqrt(q0). :func:`counting_significance` gives the
closed forms of one counting bin for checks.

Histograms (the ``hists`` dict that every function takes) are plain dicts::

    {
        "edges": array (n + 1,) or None,       # score bin edges, for tables and plots only
        "signal": array (n,),                  # sum of signal weights per bin (expected events)
        "signal_sumw2": array (n,),            # sum of squared signal weights (optional)
        "backgrounds": {process: array (n,)},  # one entry per background process
        "backgrounds_sumw2": {process: array (n,)},  # (optional; missing = no MC-stat error)
    }

Yields are expected numbers of events at the luminosity that the weights stand for; the
``lumi_scale`` option multiplies them. :func:`histograms` builds the dict from per-event
scores; a cut-based analysis is a one-bin histogram of the events that pass its selection
(e.g. ``histograms(passed.astype(float), labels, weights, bins=[0.5, 1.5])``).

Functions: :func:`histograms`, :func:`workspace`, :func:`discovery_significance`,
:func:`counting_significance`, :func:`luminosity_to_match`, :func:`compare`,
:func:`significance_table`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from colliderlab.core.errors import ConfigError, did_you_mean

logger = logging.getLogger(__name__)

#: Name of the channel, of the signal sample and of the parameter of interest in the spec.
CHANNEL = "score"
SIGNAL = "signal"
POI = "mu"
#: Name of the shared Monte Carlo statistical-uncertainty modifier.
MCSTAT = "mcstat"
#: Largest luminosity factor that :func:`luminosity_to_match` tries before it returns inf.
K_MAX = 1.0e4
#: A per-bin sum of weights above -NEG_TOL * (sum of |weights| in that bin) is rounding noise
#: and is set to zero; anything more negative is an error.
NEG_TOL = 1.0e-9
#: Background name used by :func:`histograms` when no process labels are given.
DEFAULT_BACKGROUND = "background"


# --------------------------------------------------------------------------- histograms


def histograms(
    scores: ArrayLike,
    labels: ArrayLike,
    weights: ArrayLike | None,
    processes: ArrayLike | None = None,
    *,
    bins: int | ArrayLike,
) -> dict[str, Any]:
    """Weighted histograms of a classifier score for the signal and each background process.

    Parameters
    ----------
    scores:
        Classifier output per event (any finite real; larger = more signal-like).
    labels:
        1 for signal events, 0 for background events.
    weights:
        Event weights in expected events at the target luminosity (None: unit weights).
        Negative weights are allowed per event; the sum in every bin of every sample must not be
        negative.
    processes:
        Background process name per event (e.g. ``"z_tautau"``, ``"ttbar"``, ``"wjets"``);
        the entries of signal events are ignored. None: a single ``"background"``.
    bins:
        Either explicit, strictly increasing edges (events outside them are not counted, as
        with :func:`numpy.histogram`; the last bin includes its upper edge), or an int ``n``:
        ``n`` bins of equal *signal* yield (weighted quantiles of the signal scores), spanning
        the scores of all events. Tied scores (a discrete score, a cut flag) can make fewer
        bins than asked.

    Returns
    -------
    dict
        ``edges``, ``signal``, ``signal_sumw2``, ``backgrounds`` and ``backgrounds_sumw2`` as
        described in the module docstring; backgrounds in sorted name order. The sums of
        squared weights are the Monte Carlo statistical variance of each bin.
    """
    x = _as_1d_finite(scores, "scores")
    n = x.size
    y = np.asarray(labels)
    if y.ndim != 1 or y.size != n:
        raise ConfigError(
            f"labels must be a 1-D array with one entry per score ({n}), got shape {y.shape}"
        )
    if not np.isin(y, (0, 1)).all():
        bad = np.unique(y[~np.isin(y, (0, 1))])[:5]
        raise ConfigError(f"labels must be 1 (signal) or 0 (background), found {bad.tolist()}")
    is_sig = y.astype(bool)
    w = np.ones(n) if weights is None else _as_1d_finite(weights, "weights")
    if w.size != n:
        raise ConfigError(f"weights has {w.size} entries but scores has {n}; pass one per event")
    if not is_sig.any():
        raise ConfigError("no signal event (label 1) in labels; the significance needs signal")
    if is_sig.all():
        raise ConfigError("no background event (label 0) in labels; the fit needs background")

    if processes is None:
        proc = np.full(n, DEFAULT_BACKGROUND, dtype=object)
    else:
        proc = np.asarray(processes, dtype=object)
        if proc.ndim != 1 or proc.size != n:
            raise ConfigError(
                f"processes must be a 1-D array with one name per score ({n}), "
                f"got shape {proc.shape}"
            )
    edges = _edges(bins, x, x[is_sig], w[is_sig])

    out: dict[str, Any] = {"edges": edges, "backgrounds": {}, "backgrounds_sumw2": {}}
    out["signal"], out["signal_sumw2"] = _weighted_hist(x[is_sig], w[is_sig], edges, SIGNAL)
    bkg = ~is_sig
    names = sorted({str(p) for p in proc[bkg]})
    if SIGNAL in names:
        raise ConfigError(
            f"a background process is named {SIGNAL!r}, the name of the signal sample; rename it"
        )
    bkg_names = proc[bkg].astype(str)
    for name in names:
        sel = bkg_names == name
        yields, sumw2 = _weighted_hist(x[bkg][sel], w[bkg][sel], edges, f"background {name!r}")
        out["backgrounds"][name] = yields
        out["backgrounds_sumw2"][name] = sumw2
    if not out["signal"].sum() > 0:
        raise ConfigError(
            "the signal yield inside the bins is zero; check the signal weights and that the "
            f"bin edges [{edges[0]:g}, {edges[-1]:g}] cover the signal scores"
        )
    return out


def _edges(bins: int | ArrayLike, x: np.ndarray, xs: np.ndarray, ws: np.ndarray) -> np.ndarray:
    """Explicit edges, checked, or ``bins`` edges of equal signal yield over the range of x."""
    if isinstance(bins, bool):  # bool is an int; True bins makes no sense
        raise ConfigError(f"bins must be an int >= 1 or an array of edges, got {bins!r}")
    if isinstance(bins, int | np.integer):
        if bins < 1:
            raise ConfigError(f"bins must be >= 1, got {bins}")
        lo, hi = float(x.min()), float(x.max())
        if lo == hi:  # every event has the same score: one bin around it
            return np.array([lo - 0.5, hi + 0.5])
        order = np.argsort(xs, kind="stable")
        xs_sorted = xs[order]
        cum = np.maximum.accumulate(np.cumsum(ws[order]))  # monotone even with negative weights
        total = cum[-1]
        if not total > 0:
            raise ConfigError(
                f"the total signal weight is {total:g}; equal-signal bins need a positive signal"
            )
        inner = []
        for k in range(1, int(bins)):
            i = int(np.searchsorted(cum, total * k / bins))
            i = min(i, xs_sorted.size - 2) if xs_sorted.size > 1 else 0
            nxt = xs_sorted[min(i + 1, xs_sorted.size - 1)]
            inner.append(0.5 * (xs_sorted[i] + nxt))  # between two events, not on one
        edges = np.unique(np.concatenate([[lo], np.clip(inner, lo, hi), [hi]]))
        if edges.size - 1 < bins:
            logger.info(
                "asked for %d equal-signal bins, made %d: tied signal scores", bins, edges.size - 1
            )
        return edges
    edges = np.asarray(bins, dtype=float)
    if edges.ndim != 1 or edges.size < 2:
        raise ConfigError(f"bins must be an int or at least two bin edges, got shape {edges.shape}")
    if not np.isfinite(edges).all() or not (np.diff(edges) > 0).all():
        raise ConfigError(
            f"bin edges must be finite and strictly increasing, got {edges.tolist()[:10]}"
        )
    return edges


def _weighted_hist(
    x: np.ndarray, w: np.ndarray, edges: np.ndarray, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """Sum of weights and of squared weights per bin; a negative bin is an error."""
    yields, _ = np.histogram(x, bins=edges, weights=w)
    sumw2, _ = np.histogram(x, bins=edges, weights=w * w)
    absw, _ = np.histogram(x, bins=edges, weights=np.abs(w))
    neg = yields < -NEG_TOL * absw
    if neg.any():
        i = int(np.flatnonzero(neg)[0])
        raise ConfigError(
            f"{what} has a negative sum of weights ({yields[i]:.4g}) in bin {i} "
            f"(score in [{edges[i]:g}, {edges[i + 1]:g}]) after summing the event weights; "
            "a Poisson expectation cannot be negative: use fewer (wider) bins or more simulated "
            "events there"
        )
    return np.clip(yields, 0.0, None), sumw2


def _as_1d_finite(values: ArrayLike, name: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be an array of numbers: {exc}") from None
    if arr.ndim != 1:
        raise ConfigError(f"{name} must be 1-D, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ConfigError(
            f"{name} has {int(bad.sum())} NaN or infinite value(s), the first at index "
            f"{int(np.flatnonzero(bad)[0])}; drop or fix those events first"
        )
    return arr


# --------------------------------------------------------------------------- checking hists


def _check_hists(hists: Mapping[str, Any], what: str = "hists") -> dict[str, Any]:
    """A validated copy of a hists dict with float arrays and every optional key filled."""
    if not isinstance(hists, Mapping):
        raise ConfigError(
            f"{what} must be a dict with 'signal' and 'backgrounds' (see histograms()), "
            f"got {type(hists).__name__}"
        )
    unknown = set(hists) - {"edges", "signal", "signal_sumw2", "backgrounds", "backgrounds_sumw2"}
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(
            f"{what} has an unknown key {key!r}; expected edges, signal, signal_sumw2, "
            "backgrounds, backgrounds_sumw2." + did_you_mean(key, ("signal", "backgrounds"))
        )
    for key in ("signal", "backgrounds"):
        if key not in hists:
            raise ConfigError(f"{what} lacks {key!r}; build it with histograms() or see its doc")
    sig = _yields(hists["signal"], f"{what}['signal']")
    n = sig.size
    bkgs = hists["backgrounds"]
    if not isinstance(bkgs, Mapping) or not bkgs:
        raise ConfigError(
            f"{what}['backgrounds'] must be a non-empty dict {{process name: yields}}, "
            f"got {bkgs!r:.80}"
        )
    out: dict[str, Any] = {"signal": sig, "backgrounds": {}, "backgrounds_sumw2": {}}
    out["signal_sumw2"] = _sumw2(hists.get("signal_sumw2"), n, f"{what}['signal_sumw2']")
    sumw2s = hists.get("backgrounds_sumw2") or {}
    for name, values in bkgs.items():
        if not isinstance(name, str) or name == SIGNAL:
            raise ConfigError(
                f"background names must be strings other than {SIGNAL!r}, got {name!r}"
            )
        out["backgrounds"][name] = _yields(values, f"{what}['backgrounds'][{name!r}]", n)
        out["backgrounds_sumw2"][name] = _sumw2(
            sumw2s.get(name), n, f"{what}['backgrounds_sumw2'][{name!r}]"
        )
    extra = set(sumw2s) - set(bkgs)
    if extra:
        key = sorted(extra)[0]
        raise ConfigError(
            f"{what}['backgrounds_sumw2'] has {key!r}, which is not a background."
            + did_you_mean(key, bkgs)
        )
    edges = hists.get("edges")
    if edges is not None:
        edges = np.asarray(edges, dtype=float)
        if edges.shape != (n + 1,):
            raise ConfigError(
                f"{what}['edges'] must have one more entry than the {n} bins, got shape "
                f"{edges.shape}; or leave it out"
            )
    out["edges"] = edges
    if not sig.sum() > 0:
        raise ConfigError(f"{what} has no signal (every signal bin is 0); Z0 would be 0")
    if not sum(b.sum() for b in out["backgrounds"].values()) > 0:
        raise ConfigError(
            f"{what} has no background (every background bin is 0); Z0 would be infinite"
        )
    return out


def _yields(values: Any, what: str, n: int | None = None) -> np.ndarray:
    arr = np.atleast_1d(_as_float(values, what))
    if arr.ndim != 1 or arr.size == 0 or (n is not None and arr.size != n):
        want = "a non-empty 1-D array" if n is None else f"{n} bins like the signal"
        raise ConfigError(f"{what} must be {want}, got shape {arr.shape}")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ConfigError(
            f"{what} must be finite and >= 0 in every bin (expected events), got "
            f"{arr.tolist()[:10]}; a negative bin after summing weights needs wider bins"
        )
    return arr


def _sumw2(values: Any, n: int, what: str) -> np.ndarray:
    if values is None:
        return np.zeros(n)
    return _yields(values, what, n)


def _as_float(values: Any, what: str) -> np.ndarray:
    try:
        return np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} must be numbers: {exc}") from None


def _merge_empty_background_bins(h: dict[str, Any]) -> dict[str, Any]:
    """Merge every bin without background into a neighbour (the next one; the last into the
    previous one), so that no bin predicts zero background.

    A bin where the simulation has no background event does not mean the background is zero
    there (only that the simulated sample is too small); a tiny floor would give that bin an
    arbitrarily large weight in the fit. Merging keeps the events and the total yields.
    """
    total = sum(h["backgrounds"].values())
    if (total > 0).all():
        return h
    groups: list[list[int]] = []
    current: list[int] = []
    for i, b in enumerate(total):
        current.append(i)
        if b > 0:
            groups.append(current)
            current = []
    if current:  # trailing bins without background join the last group
        groups[-1].extend(current)
    logger.info("merged %d bin(s) without background into neighbours", total.size - len(groups))

    def merge(arr: np.ndarray) -> np.ndarray:
        return np.array([arr[g].sum() for g in groups])

    out = dict(h)
    for key in ("signal", "signal_sumw2"):
        out[key] = merge(h[key])
    for key in ("backgrounds", "backgrounds_sumw2"):
        out[key] = {name: merge(arr) for name, arr in h[key].items()}
    if h["edges"] is not None:
        out["edges"] = np.array([h["edges"][g[0]] for g in groups] + [h["edges"][-1]])
    return out


# --------------------------------------------------------------------------- workspace


def workspace(
    hists: Mapping[str, Any],
    *,
    bkg_norm_unc: float | Mapping[str, float] = 0.1,
    mc_stat: bool = True,
    lumi_scale: float = 1.0,
) -> dict[str, Any]:
    """The pyhf JSON workspace of a score histogram (HistFactory schema 1.0.0).

    Parameters
    ----------
    hists:
        Histograms as returned by :func:`histograms` (see the module docstring).
    bkg_norm_unc:
        Relative normalisation uncertainty of each background, in [0, 1): one float for all,
        or a dict {process: uncertainty} that names every background (it may name more, so
        one dict serves several analyses). Each becomes a ``normsys`` modifier
        ``norm_<process>`` with hi = 1 + unc and lo = 1 - unc; 0 adds none.
    mc_stat:
        Add the Monte Carlo statistical uncertainty of the summed background (a shared
        ``staterror`` modifier ``mcstat``, from ``backgrounds_sumw2``). Skipped when no
        background has a sum of squared weights.
    lumi_scale:
        Multiply every yield by this factor (a luminosity k times larger). The relative
        uncertainties stay the same: normalisation systematics are relative, and the sums of
        squared weights scale by k**2 (the same simulated events, reweighted).

    Bins without any background are merged into the next bin first (the last one into the
    previous bin): zero simulated background there only means too few simulated events, and a
    tiny floor instead would give such a bin an arbitrary weight in the fit. Backgrounds that
    are zero in every bin are dropped (and need no entry in ``bkg_norm_unc``).
    The observations are the Asimov data of signal + background at mu = 1. The spec is
    validated with ``pyhf.Workspace`` before it is returned.
    """
    spec = _spec(hists, bkg_norm_unc=bkg_norm_unc, mc_stat=mc_stat, lumi_scale=lumi_scale)
    _pyhf_workspace(spec)  # validates
    return spec


def _spec(
    hists: Mapping[str, Any],
    *,
    bkg_norm_unc: float | Mapping[str, float] = 0.1,
    mc_stat: bool = True,
    lumi_scale: float = 1.0,
) -> dict[str, Any]:
    """:func:`workspace` without the pyhf schema validation."""
    h = _merge_empty_background_bins(_check_hists(hists))
    k = _positive(lumi_scale, "lumi_scale")
    present = [name for name, yields in h["backgrounds"].items() if yields.sum() > 0]
    uncs = _norm_uncertainties(bkg_norm_unc, present)
    if not isinstance(mc_stat, bool | np.bool_):
        raise ConfigError(f"mc_stat must be True or False, got {mc_stat!r}")
    with_mcstat = bool(mc_stat) and any(s.sum() > 0 for s in h["backgrounds_sumw2"].values())

    samples: list[dict[str, Any]] = [
        {
            "name": SIGNAL,
            "data": (k * h["signal"]).tolist(),
            "modifiers": [{"name": POI, "type": "normfactor", "data": None}],
        }
    ]
    for name in present:
        yields = h["backgrounds"][name]
        modifiers: list[dict[str, Any]] = []
        if uncs[name] > 0:
            modifiers.append(
                {
                    "name": f"norm_{name}",
                    "type": "normsys",
                    "data": {"hi": 1.0 + uncs[name], "lo": 1.0 - uncs[name]},
                }
            )
        if with_mcstat:
            sigma = k * np.sqrt(h["backgrounds_sumw2"][name])
            modifiers.append({"name": MCSTAT, "type": "staterror", "data": sigma.tolist()})
        samples.append({"name": name, "data": (k * yields).tolist(), "modifiers": modifiers})

    asimov = k * (h["signal"] + sum(h["backgrounds"].values()))
    spec = {
        "channels": [{"name": CHANNEL, "samples": samples}],
        "observations": [{"name": CHANNEL, "data": asimov.tolist()}],
        "measurements": [
            {"name": "discovery", "config": {"poi": POI, "parameters": []}},
        ],
        "version": "1.0.0",
    }
    return spec


def _norm_uncertainties(unc: float | Mapping[str, float], names: Sequence[str]) -> dict[str, float]:
    if isinstance(unc, Mapping):
        missing = [n for n in names if n not in unc]
        if missing:
            hint = ""
            for key in unc:
                if key not in names and did_you_mean(str(key), missing):
                    hint = f" For {key!r}:" + did_you_mean(str(key), missing)
                    break
            raise ConfigError(
                f"bkg_norm_unc has no uncertainty for background(s) {missing}; it names "
                f"{sorted(map(str, unc))}. Give one per background, or one float for all." + hint
            )
        values = {n: unc[n] for n in names}
    else:
        values = dict.fromkeys(names, unc)
    out = {}
    for name, value in values.items():
        try:
            u = float(value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"bkg_norm_unc for {name!r} must be a number, got {value!r}"
            ) from None
        if not 0.0 <= u < 1.0:
            raise ConfigError(
                f"bkg_norm_unc for {name!r} must be a relative uncertainty in [0, 1) "
                f"(0.1 = 10 %), got {value!r}"
            )
        out[name] = u
    return out


def _positive(value: Any, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a positive number, got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise ConfigError(f"{name} must be a positive finite number, got {value!r}")
    return v


def _pyhf_workspace(spec: Any) -> Any:
    import pyhf  # deferred: importing pyhf takes about a second

    if isinstance(spec, pyhf.Workspace):
        return spec
    try:
        with _quiet_schema():
            return pyhf.Workspace(spec)
    except pyhf.exceptions.InvalidSpecification as exc:
        raise ConfigError(f"not a valid pyhf workspace: {exc}") from None


@contextlib.contextmanager
def _quiet_schema() -> Iterator[None]:
    """Silence the one DeprecationWarning that pyhf 0.7.6's schema validation raises on every
    call with jsonschema >= 4.18 (``jsonschema.RefResolver is deprecated``); nothing else."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="jsonschema.RefResolver is deprecated", category=DeprecationWarning
        )
        yield


# --------------------------------------------------------------------------- significance


def discovery_significance(
    hists_or_spec: Mapping[str, Any] | Any,
    *,
    bkg_norm_unc: float | Mapping[str, float] | None = None,
    mc_stat: bool | None = None,
    lumi_scale: float | None = None,
) -> float:
    """Expected discovery significance Z0 (in standard deviations) of a binned analysis.

    ``hists_or_spec`` is a hists dict (the keyword options then go to :func:`workspace`; left
    out, they take its defaults: 10 % per background, MC stat on, scale 1), or a pyhf
    workspace (a JSON spec or a ``pyhf.Workspace``), for which the options must be left out.
    For a spec, the first measurement is used and its POI is the signal strength.

    The data are the Asimov data of the model at mu = 1 with every other parameter at its
    nominal value (for a spec from :func:`workspace`, exactly its observations); Z0 is
    ``norm.isf(p0)`` with p0 from ``pyhf.infer.hypotest(0.0, data, model, test_stat="q0",
    calctype="asymptotics")``, i.e. sqrt(q0). Where p0 underflows to 0 (Z0 above ~37), Z0 is
    sqrt(q0) computed directly. Uses the active pyhf backend (numpy by default).
    """
    import pyhf
    from scipy.stats import norm

    options = {"bkg_norm_unc": bkg_norm_unc, "mc_stat": mc_stat, "lumi_scale": lumi_scale}
    if not isinstance(hists_or_spec, Mapping):
        raise ConfigError(
            "discovery_significance takes a hists dict (see histograms()) or a pyhf workspace, "
            f"got {type(hists_or_spec).__name__}"
        )
    if "channels" not in hists_or_spec:
        spec = _spec(hists_or_spec, **{k: v for k, v in options.items() if v is not None})
        ws = _pyhf_workspace(spec)  # validates, once
    else:
        given = [k for k, v in options.items() if v is not None]
        if given:
            raise ConfigError(
                f"{given} only apply to histograms; for a pyhf workspace build the spec with "
                "workspace(hists, ...) and pass it without options"
            )
        ws = _pyhf_workspace(hists_or_spec)
    try:
        with _quiet_schema():
            model = ws.model()
    except pyhf.exceptions.InvalidModel as exc:
        raise ConfigError(f"the workspace does not make a model: {exc}") from None
    if model.config.poi_index is None:
        raise ConfigError("the workspace measurement has no POI; set config.poi to the mu")
    pars = model.config.suggested_init()
    pars[model.config.poi_index] = 1.0
    data = model.expected_data(pars)
    p0 = float(pyhf.infer.hypotest(0.0, data, model, test_stat="q0", calctype="asymptotics"))
    z = float(norm.isf(p0))
    if not math.isfinite(z):  # p0 underflowed: Z0 = sqrt(q0) without the detour
        q0 = pyhf.infer.test_statistics.q0(
            0.0,
            data,
            model,
            model.config.suggested_init(),
            model.config.suggested_bounds(),
            model.config.suggested_fixed(),
        )
        z = math.sqrt(max(float(q0), 0.0))
    return max(z, 0.0)


def counting_significance(s: float, b: float, sigma_b: float = 0.0) -> float:
    """Closed-form Asimov discovery significance of one counting bin (arXiv:1007.1727).

    ``s`` and ``b`` are the expected signal and background events, ``sigma_b`` the absolute
    uncertainty on b (events). Without it (Cowan et al., eq. 97)::

        Z0 = sqrt(2 ((s + b) ln(1 + s/b) - s))

    and with it (b measured in a control sample of tau = b / sigma_b**2 times its size; the
    formula of G. Cowan's note "Discovery sensitivity for a counting experiment with
    background uncertainty", 2012)::

        Z0 = sqrt(2 ((s + b) ln((s + b)(b + sigma_b**2) / (b**2 + (s + b) sigma_b**2))
                     - b**2 / sigma_b**2 ln(1 + sigma_b**2 s / (b (b + sigma_b**2)))))

    which tends to s / sqrt(b + sigma_b**2) for s << b. A pyhf ``normsys`` constraint is
    Gaussian in the nuisance parameter, so it agrees within a few percent for sigma_b / b
    of order 10 %.
    """
    s_, b_, sb = (_as_scalar(v, n) for v, n in ((s, "s"), (b, "b"), (sigma_b, "sigma_b")))
    if s_ < 0:
        raise ConfigError(f"s must be >= 0 (expected signal events), got {s}")
    if not b_ > 0:
        raise ConfigError(f"b must be > 0 (expected background events), got {b}")
    if sb < 0:
        raise ConfigError(f"sigma_b must be >= 0 (absolute uncertainty on b), got {sigma_b}")
    if s_ == 0:
        return 0.0
    if sb == 0:
        q0 = 2.0 * ((s_ + b_) * math.log1p(s_ / b_) - s_)
    else:
        v = sb * sb
        q0 = 2.0 * (
            (s_ + b_) * math.log((s_ + b_) * (b_ + v) / (b_ * b_ + (s_ + b_) * v))
            - (b_ * b_ / v) * math.log1p(v * s_ / (b_ * (b_ + v)))
        )
    return math.sqrt(max(q0, 0.0))


def _as_scalar(value: Any, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    return v


# --------------------------------------------------------------------------- luminosity


def luminosity_to_match(
    hists_reference: Mapping[str, Any],
    z_target: float,
    *,
    bkg_norm_unc: float | Mapping[str, float] = 0.1,
    mc_stat: bool = True,
    k_max: float = K_MAX,
) -> float:
    """Luminosity factor k for which the reference analysis reaches Z0 = ``z_target``.

    Every yield of ``hists_reference`` is scaled by k with the relative uncertainties kept
    (``workspace(..., lumi_scale=k)``), and k solves Z0(k) = z_target by bracketing in log k
    from the statistics-only guess (z_target / Z0(1))**2 and :func:`scipy.optimize.brentq`
    (relative precision about 1e-6 on k). k < 1 means the reference is already better.

    Relative systematics do not shrink with luminosity, so Z0(k) may level off below the
    target. If Z0(k_max) < z_target the target is out of reach: the function logs a warning
    with the Z0 reached and returns ``math.inf``.
    """
    from scipy.optimize import brentq

    z_target = _as_scalar(z_target, "z_target")
    if not z_target > 0:
        raise ConfigError(f"z_target must be > 0 (a significance in sigma), got {z_target}")
    k_max = _positive(k_max, "k_max")
    if k_max <= 1:
        raise ConfigError(f"k_max must be > 1, got {k_max}")
    h = _check_hists(hists_reference, "hists_reference")
    options = {"bkg_norm_unc": bkg_norm_unc, "mc_stat": mc_stat}
    _spec(h, **options)  # bad options fail here, once, with their own message

    def f(log_k: float) -> float:
        return discovery_significance(h, lumi_scale=math.exp(log_k), **options) - z_target

    f0 = f(0.0)
    if f0 == 0:
        return 1.0
    log_k_max, log_k_min = math.log(k_max), math.log(1e-12)
    z1 = f0 + z_target
    guess = 2.0 * math.log(z_target / z1) if z1 > 0 else log_k_max
    # Z0 grows like sqrt(k) without systematics and slower with them: the guess lies on the
    # near side of the root, so walk outward from it with growing steps.
    direction = 1.0 if f0 < 0 else -1.0
    lo, f_lo = 0.0, f0
    x = min(max(guess, log_k_min), log_k_max)
    if (x - lo) * direction <= 0:
        x = lo + direction * math.log(2.0)
    step = math.log(2.0)
    while True:
        fx = f(x)
        if fx == 0:
            return math.exp(x)
        if (fx > 0) != (f_lo > 0):
            break
        if direction > 0 and x >= log_k_max:
            logger.warning(
                "the reference analysis cannot reach Z0 = %.3g: at %.3g times the luminosity "
                "its expected Z0 is only %.3g. Its relative systematic uncertainties do not "
                "shrink with luminosity and limit it; returning inf",
                z_target,
                k_max,
                fx + z_target,
            )
            return math.inf
        if direction < 0 and x <= log_k_min:
            raise ConfigError(
                f"z_target = {z_target:g} is too small: even at 1e-12 times the luminosity the "
                f"reference reaches Z0 = {fx + z_target:.3g}"
            )
        lo, f_lo = x, fx
        x = min(max(x + direction * step, log_k_min), log_k_max)
        step *= 2.0
    a, b = sorted((lo, x))
    root = brentq(f, a, b, xtol=1e-7, rtol=1e-10)
    return float(math.exp(root))


# --------------------------------------------------------------------------- comparison


def compare(
    analyses: Mapping[str, Mapping[str, Any]],
    *,
    reference: str = "cut-based",
    bkg_norm_unc: float | Mapping[str, float] = 0.1,
    mc_stat: bool = True,
    k_max: float = K_MAX,
) -> list[dict[str, Any]]:
    """Compare analyses by expected discovery significance, one row per analysis.

    ``analyses`` maps a name (``"cut-based"``, ``"BDT"``, ``"DNN"``...) to its hists. Every
    analysis gets the same statistical model (``bkg_norm_unc``, ``mc_stat``). Each row, in the
    order of ``analyses``, is a dict with

    * ``name``: the analysis;
    * ``z0``: its expected discovery significance;
    * ``z0_ratio``: z0 / z0 of the reference;
    * ``lumi_factor``: the factor by which the reference's luminosity must grow for its Z0 to
      equal this analysis' (1 for the reference itself, < 1 for a weaker analysis,
      ``inf`` where the reference's systematics cap it below, see :func:`luminosity_to_match`);
    * ``reference``: the reference's name.
    """
    if not isinstance(analyses, Mapping) or not analyses:
        raise ConfigError("analyses must be a non-empty dict {analysis name: hists}")
    if reference not in analyses:
        raise ConfigError(
            f"reference {reference!r} is not one of the analyses {list(analyses)}; pass "
            "reference=<name>." + did_you_mean(str(reference), map(str, analyses))
        )
    options = {"bkg_norm_unc": bkg_norm_unc, "mc_stat": mc_stat}
    z = {}
    for name, hists in analyses.items():
        try:
            z[name] = discovery_significance(_check_hists(hists, f"analyses[{name!r}]"), **options)
        except ConfigError as exc:
            raise ConfigError(f"analysis {name!r}: {exc}") from None
    z_ref = z[reference]
    rows = []
    for name in analyses:
        if name == reference:
            k = 1.0
        elif z[name] > 0:
            k = luminosity_to_match(analyses[reference], z[name], k_max=k_max, **options)
        else:
            k = 0.0
        ratio = z[name] / z_ref if z_ref > 0 else math.inf
        rows.append(
            {
                "name": name,
                "z0": z[name],
                "z0_ratio": ratio,
                "lumi_factor": k,
                "reference": reference,
            }
        )
    return rows


def significance_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table of :func:`compare` rows: analysis, Z0, Z0 / Z0(reference) and the
    luminosity factor the reference needs to match (``∞`` where systematics cap it)."""
    if not rows:
        raise ConfigError("rows is empty; pass the list that compare() returns")
    keys = ("name", "z0", "z0_ratio", "lumi_factor")
    for i, row in enumerate(rows):
        missing = [k for k in keys if k not in row]
        if missing:
            raise ConfigError(f"rows[{i}] lacks {missing}; pass the rows that compare() returns")
    ref = str(rows[0].get("reference", "reference"))
    header = [
        "analysis",
        "Z0 (σ)",  # noqa: RUF001 (sigma, the unit)
        f"Z0 / Z0({ref})",
        f"luminosity {ref} needs to match",
    ]
    lines = [
        "| " + " | ".join(h.replace("|", "\\|") for h in header) + " |",
        "| --- | ---: | ---: | ---: |",
    ]
    for row in rows:
        k = float(row["lumi_factor"])
        k_cell = "∞ (systematics-limited)" if math.isinf(k) else f"{k:.2f}×"  # noqa: RUF001
        cells = [
            str(row["name"]).replace("|", "\\|"),
            f"{float(row['z0']):.2f}",
            f"{float(row['z0_ratio']):.2f}",
            k_cell,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
