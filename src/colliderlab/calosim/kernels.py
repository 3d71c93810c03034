"""Compiled sampling kernels of the shower models (CPU, numba).

Sampling a shower of the best VAE configuration (``zero_mask``, ``conditional_sigma``,
``energy_model="spline_iaf"``) is, past the two small networks, a handful of cheap operations
per voxel and per layer energy. As a chain of PyTorch operations it costs more than the
networks: each one a pass over a (B, n_voxels) tensor, the random numbers from a Mersenne
twister (~3 ns each), PyTorch's softmax over the 8 bins of a spline at ~18 ns per element.
These kernels do the same in one pass each, vectorised by LLVM:

* :func:`vae_voxels`: for each voxel the filled / empty draw, the Gaussian noise of the
  decoder's conditional width, the in-layer fraction (sigmoid), then per layer the
  normalisation to the layer energy and the readout threshold (the last steps of
  ``CaloVAE.generate`` and ``ShowerPreprocessing.compose``), from a float32 or a bfloat16
  decoder output (``CaloModel.fused_precision``);
* :func:`rqs_forward`: the rational-quadratic spline of the layer-energy flow (the map of
  ``models._rqs_forward``) for a batch of points, bins laid out as rows.

Random numbers: a counter-based generator, SplitMix64's output function (Steele, Lea,
Flood, OOPSLA 2014) applied to ``key + index * 0x9E3779B97F4A7C15`` (the SplitMix64 sequence
started at ``key``): one 64-bit value per voxel gives the uniform of the filled draw (its top
24 bits, in [0, 1)) and that of the Gaussian (the next 23 bits plus one half, over 2^23: in
(0, 1), symmetric about 1/2, exact in float32). The key is drawn from PyTorch's generator by
the caller, so a seeded ``sample`` stays reproducible. The Gaussian is the normal quantile
of the uniform, ``sqrt(2) erfinv(2 u - 1)``, with Giles' single-precision polynomials for
erfinv ("Approximating the erfinv function", GPU Computing Gems, 2011): within 2e-6 of the
exact quantile (float32), out to +-5.3. ``exp``, ``log`` and softplus (``max(x, 0)`` plus a
polynomial of ``exp(-|x|)``, no division) are branch-free polynomials so
that the loops vectorise (libm's are scalar calls, ~5 ns each; 0.5 ns here). The voxel
kernel computes in float32 (16 AVX-512 lanes; 1.4x faster than in float64), exp and log to
~1e-7 relative; the spline in float64 (exp to 3e-13), writing the input's dtype.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit
from numba.core import types
from numba.extending import intrinsic

# No 'nnan' / 'ninf': comparisons keep their IEEE meaning with a NaN or an inf (from a broken
# network), so a voxel then reads out as zero or as a finite fraction, never as undefined
# behaviour. error_model="numpy": a float division is a plain division (Python's
# ZeroDivisionError check would stop the vectorisation).
_FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}
_JIT = {"cache": True, "fastmath": _FAST, "error_model": "numpy"}

_LN2_HI = 6.93147180369123816490e-01  # ln 2 = _LN2_HI + _LN2_LO (Cody-Waite split)
_LN2_LO = 1.90821492927058770002e-10
_LOG2E = 1.4426950408889634
_SQRT2 = math.sqrt(2.0)
_GAMMA = np.uint64(0x9E3779B97F4A7C15)  # SplitMix64's increment (golden ratio * 2^64)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


@intrinsic
def _as_f64(typingctx, x):
    """The bits of an int64 read as a float64."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@intrinsic
def _as_f32(typingctx, x):
    """The bits of an int32 read as a float32."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


@intrinsic
def _as_i32(typingctx, x):
    """The bits of a float32 read as an int32."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.int32(types.float32), codegen


@intrinsic
def _widen(typingctx, x):
    """A float32 of a float32 (itself) or of the bits of a bfloat16 held in a uint16 (the
    upper half of a float32): the voxel kernel reads either decoder output."""
    if x == types.float32:

        def same(context, builder, signature, args):
            return args[0]

        return types.float32(x), same
    if x == types.uint16:

        def wide(context, builder, signature, args):
            i32 = ir.IntType(32)
            bits = builder.shl(builder.zext(args[0], i32), ir.Constant(i32, 16))
            return builder.bitcast(bits, ir.FloatType())

        return types.float32(x), wide
    return None


@njit(inline="always", **_JIT)
def _exp(x):
    """exp(x) for x in [-700, 700] (clamped), relative error 3e-13: x = k ln 2 + r,
    |r| <= ln 2 / 2, a degree-11 Taylor polynomial of exp(r) times 2^k from its bits."""
    x = min(max(x, -700.0), 700.0)
    k = np.floor(x * _LOG2E + 0.5)
    r = x - k * _LN2_HI - k * _LN2_LO
    p = 1.0 / 39916800.0
    p = 1.0 / 3628800.0 + r * p
    p = 1.0 / 362880.0 + r * p
    p = 1.0 / 40320.0 + r * p
    p = 1.0 / 5040.0 + r * p
    p = 1.0 / 720.0 + r * p
    p = 1.0 / 120.0 + r * p
    p = 1.0 / 24.0 + r * p
    p = 1.0 / 6.0 + r * p
    p = 0.5 + r * p
    p = 1.0 + r * p
    p = 1.0 + r * p
    return p * _as_f64((np.int64(k) + 1023) << 52)


# The voxel kernel's functions in float32 (16 lanes of AVX-512 instead of 8): every constant
# a float32, so that no operation is promoted to float64
_F = np.float32
_ZERO, _HALF, _ONE, _TWO = _F(0.0), _F(0.5), _F(1.0), _F(2.0)
_LN2_HI32, _LN2_LO32 = _F(0.693145751953125), _F(1.428606765330187e-06)
_LOG2E32, _LIMIT32 = _F(_LOG2E), _F(87.0)
_EXP32 = tuple(_F(1.0 / math.factorial(k)) for k in range(8))
_ATANH32 = tuple(_F(1.0 / k) for k in (3, 5, 7, 9))
_ERFINV_CENTRE = tuple(
    _F(v)
    for v in (
        2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087,
        -0.00125372503, -0.00417768164, 0.246640727, 1.50140941,
    )
)  # fmt: skip
_ERFINV_TAIL = tuple(
    _F(v)
    for v in (
        -0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773,
        -0.0076224613, 0.00943887047, 1.00167406, 2.83297682,
    )
)  # fmt: skip
# log(1 + t) / t on [0, 1], degree 7 (least squares on Chebyshev nodes): within 2e-7
_LOG1P_UNIT = tuple(
    _F(v)
    for v in (
        0.99999981, -0.499974494, 0.332761766, -0.244996117, 0.17757024, -0.107853679,
        0.0442141923, -0.00857467621,
    )
)  # fmt: skip
_C25, _C3, _C4, _C5, _SQRT2_32 = _F(2.5), _F(3.0), _F(4.0), _F(5.0), _F(_SQRT2)
_U23 = _F(1.0 / 8388608.0)
_U24 = _F(1.0 / 16777216.0)


@njit(inline="always", **_JIT)
def _exp32(x):
    """float32 exp(x) for x in [-87, 87] (clamped), relative error 6e-8 (degree 7)."""
    x = min(max(x, -_LIMIT32), _LIMIT32)
    k = np.floor(x * _LOG2E32 + _HALF)  # np.floor keeps float32 (math.floor: an int64)
    r = x - k * _LN2_HI32 - k * _LN2_LO32
    c = _EXP32
    p = c[7]
    p = c[6] + r * p
    p = c[5] + r * p
    p = c[4] + r * p
    p = c[3] + r * p
    p = c[2] + r * p
    p = c[1] + r * p
    p = c[0] + r * p
    return p * _as_f32((np.int32(k) + np.int32(127)) << np.int32(23))


@njit(inline="always", **_JIT)
def _log32(x):
    """float32 log(x) for finite normal x > 0, relative error 1e-7: x = 2^e m with m in
    [sqrt(1/2), sqrt(2)), log m = 2 atanh(s), s = (m - 1) / (m + 1), to s^9."""
    b = _as_i32(x)
    big = np.int32((b & np.int32(0x007FFFFF)) > np.int32(0x3504F3))  # mantissa > sqrt(2)
    e = _F((b >> np.int32(23)) - np.int32(127) + big)
    m = _as_f32(((b & np.int32(0x007FFFFF)) | np.int32(0x3F800000)) - (big << np.int32(23)))
    s = (m - _ONE) / (m + _ONE)
    s2 = s * s
    c = _ATANH32
    q = c[3]
    q = c[2] + s2 * q
    q = c[1] + s2 * q
    q = c[0] + s2 * q
    q = _ONE + s2 * q
    return e * _LN2_HI32 + (_TWO * s * q + e * _LN2_LO32)


@njit(inline="always", **_JIT)
def _softplus32(x):
    """float32 log(1 + exp(x)), relative error 4e-7: max(x, 0) + log(1 + t), t = exp(-|x|)
    in (0, 1], the log a polynomial in t (no division, no exponent split)."""
    t = _exp32(-abs(x))
    c = _LOG1P_UNIT
    q = c[7]
    for j in range(6, -1, -1):
        q = c[j] + t * q
    return max(x, _ZERO) + t * q


@njit(inline="always", **_JIT)
def _normal_quantile32(u):
    """The standard normal quantile of u in (0, 1), float32: sqrt(2) erfinv(2 u - 1), Giles'
    single-precision erfinv (both branches computed, then selected: no jump in the loop)."""
    x = _TWO * u - _ONE
    w = -_log32(_C4 * u * (_ONE - u))
    a = w - _C25
    c = _ERFINV_CENTRE
    p = c[0]
    for j in range(1, 9):
        p = c[j] + p * a
    b = math.sqrt(w) - _C3
    c = _ERFINV_TAIL
    q = c[0]
    for j in range(1, 9):
        q = c[j] + q * b
    return _SQRT2_32 * (p if w < _C5 else q) * x


@njit(inline="always", **_JIT)
def _mix(z):
    """SplitMix64's output function (a bijection of the 64-bit integers)."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@njit(inline="always", **_JIT)
def _draw(key, index):
    """The two float32 uniforms of counter ``index`` of the stream ``key``: (top 24 bits /
    2^24, in [0, 1 - 2^-24]), (the next 23 bits + 1/2) / 2^23, in [2^-24, 1 - 2^-24] and
    symmetric about 1/2, both exact in float32."""
    h = _mix(key + index * _GAMMA)
    u1 = _F(np.uint32(h >> np.uint64(40))) * _U24
    u2 = (_F(np.uint32((h >> np.uint64(17)) & np.uint64(0x7FFFFF))) + _HALF) * _U23
    return u1, u2


@njit(**_JIT)
def uniforms(key, count):
    """The uniforms (u_fill, u_gauss), each (count,), of counters 0 .. count - 1 of the
    stream ``key`` (uint64): those :func:`vae_voxels` uses for voxel ``b * n_voxels + i``."""
    u1 = np.empty(count, dtype=np.float32)
    u2 = np.empty(count, dtype=np.float32)
    k = np.uint64(key)
    for i in range(count):
        u1[i], u2[i] = _draw(k, np.uint64(i))
    return u1, u2


@njit(**_JIT)
def _exp64_each(x):
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = _exp(x[i])
    return out


@njit(**_JIT)
def _float32_each(x):
    e, g, q, s = np.empty_like(x), np.empty_like(x), np.empty_like(x), np.empty_like(x)
    for i in range(x.size):
        e[i], g[i], q[i] = _exp32(x[i]), _log32(x[i]), _normal_quantile32(x[i])
        s[i] = _softplus32(x[i])
    return e, g, q, s


def polynomials(x: np.ndarray) -> dict[str, np.ndarray]:
    """The kernels' polynomial functions of each element of x (1-D), for tests: float64 x
    -> {"exp"} (the spline's), float32 x -> {"exp", "log", "normal_quantile", "softplus"}
    (the voxel kernel's; the log is meant for x > 0, the quantile for x in (0, 1))."""
    if x.dtype == np.float32:
        names = ("exp", "log", "normal_quantile", "softplus")
        return dict(zip(names, _float32_each(x), strict=True))
    return {"exp": _exp64_each(x.astype(np.float64))}


def vae_voxels(
    out: np.ndarray,
    rho: np.ndarray,
    scale: np.ndarray,
    shift: np.ndarray,
    starts: np.ndarray,
    layers: np.ndarray,
    key: int,
    noise: float,
    min_sigma: float,
    alpha: float,
    threshold: float,
    into: np.ndarray | None = None,
) -> np.ndarray:
    """The voxel energies (B, n) float32 of a ``zero_mask``, ``conditional_sigma`` VAE with a
    layer-energy model, from its decoder output; computed in float32 (see
    :func:`_vae_voxels` for the arguments). ``out`` is float32, or bfloat16 given as the
    uint16 of its bits (``tensor.view(torch.int16).numpy().view(np.uint16)``). ``into``: a
    C-contiguous float32 (B, n) array to write to (returned), e.g. a slice of a larger batch;
    None: a new one. The shapes are checked here: the compiled loop does no bounds checks, so
    a wrong shape would read past the arrays."""
    n = rho.shape[0] if rho.ndim == 1 else -1
    b = out.shape[0] if out.ndim == 2 else -1
    starts = np.asarray(starts, dtype=np.int64)
    ok = (
        n > 0
        and out.shape == (b, 3 * n)
        and scale.shape == shift.shape == (n,)
        and starts.ndim == 1
        and starts.size >= 2
        and starts[0] == 0
        and starts[-1] == n
        and bool(np.all(np.diff(starts) >= 0))
        and layers.shape == (b, starts.size - 1)
    )
    if into is None:
        into = np.empty((max(b, 0), max(n, 0)), dtype=np.float32)
    ok = ok and into.shape == (b, n) and into.dtype == np.float32 and into.flags.c_contiguous
    if not ok:
        raise ValueError(
            "vae_voxels: need out (B, 3 n), rho / scale / shift (n,), starts (n_layers + 1,) "
            f"from 0 to n, non-decreasing, and layers (B, n_layers); got out {out.shape}, rho "
            f"{rho.shape}, scale {scale.shape}, shift {shift.shape}, starts {starts.tolist()}, "
            f"layers {layers.shape}, and into, if given, C-contiguous float32 (B, n); got "
            f"{into.dtype} {into.shape}."
        )
    wide = out.dtype if out.dtype == np.uint16 else np.float32  # bfloat16 bits, or float32
    f32 = [np.ascontiguousarray(a, dtype=np.float32) for a in (rho, scale, shift, layers)]
    _vae_voxels(
        np.ascontiguousarray(out, dtype=wide), *f32[:3], starts, f32[3], np.uint64(key),
        float(noise), float(min_sigma), float(alpha), np.float32(threshold), into,
    )  # fmt: skip
    return into


@njit(**_JIT)
def _vae_voxels(
    out, rho, scale, shift, starts, layers, key, noise, min_sigma, alpha, threshold, res
):
    """The compiled loop of :func:`vae_voxels`, writing into ``res`` (B, n) float32.

    Args:
        out: decoder output (B, 3 n) float32 or bfloat16 bits (uint16): shape means, fill
            logits, offsets of rho.
        rho: (n,) float32, the width parameters; sigma = min_sigma + softplus(rho + offset).
        scale, shift: (n,) float32 unstandardisation of the shape logits (y scale + shift).
        starts: (n_layers + 1,) int64 first voxel of each layer, then n.
        layers: (B, n_layers) float32 layer energies (MeV).
        key: uint64 key of the random stream (voxel b, i uses counter b n + i).
        noise: the factor of the Gaussian noise (``sample_noise``).
        alpha: floor of the logit transform; fractions <= alpha (1 - 2 alpha) are empty.
        threshold: float32 readout threshold (MeV): deposits below it are zeroed.
    """
    n_showers = out.shape[0]
    n = rho.shape[0]
    n_layers = starts.shape[0] - 1
    frac = np.empty(n, dtype=np.float32)
    floor = _F(alpha * (1.0 - 2.0 * alpha))
    a, lowest, factor = _F(alpha), _F(min_sigma), _F(noise)
    k = np.uint64(key)
    for b in range(n_showers):
        # row views indexed by loop counters: numba then knows the indices are >= 0 and
        # emits contiguous vector loads, not wraparound checks and gathers
        mean, logits, offsets = out[b, :n], out[b, n : 2 * n], out[b, 2 * n :]
        first = np.uint64(b) * np.uint64(n)
        for i in range(n):
            u1, u2 = _draw(k, first + np.uint64(i))
            filled = u1 * (_ONE + _exp32(-_widen(logits[i]))) < _ONE  # u1 < sigmoid(logit)
            sigma = lowest + _softplus32(rho[i] + _widen(offsets[i]))
            y = _widen(mean[i]) + factor * sigma * _normal_quantile32(u2)
            s = _ONE / (_ONE + _exp32(-(y * scale[i] + shift[i]))) - a
            frac[i] = s if (filled & (s > floor)) else _ZERO
        row = res[b]
        for layer in range(n_layers):
            part, deposits = frac[starts[layer] : starts[layer + 1]], row[starts[layer] :]
            total = _ZERO
            for i in range(part.size):
                total += part[i]
            f = layers[b, layer] / total if total > _ZERO else _ZERO
            for i in range(part.size):
                e = part[i] * f
                deposits[i] = e if e >= threshold else _ZERO


@njit(inline="always", **_JIT)
def _rqs_block(x, p, bins, bound, slope, out):
    """:func:`rqs_forward` (inlined into its callers, so a constant ``bins`` unrolls the
    loops over the bins). Blocks of 128 points keep the cumulative widths in L1."""
    m = x.shape[0]
    soft = 2.0 / math.log(slope)  # the soft clipping of the bin logits
    soft_d = 1.0 / math.log(slope)
    block = 128
    cw = np.empty((bins, block))
    ch = np.empty((bins, block))
    dd = np.empty((bins - 1, block))  # the block's inner-knot logits, C-contiguous
    for start in range(0, m, block):
        size = min(block, m - start)
        # row views indexed by loop counters (contiguous vector loads, see vae_voxels)
        xs, ys = x[start : start + size], out[start : start + size]
        for j in range(bins):
            pw, ph = p[j, start : start + size], p[bins + j, start : start + size]
            w, h = cw[j], ch[j]
            for i in range(size):
                w[i] = _exp(pw[i] / (1.0 + abs(pw[i] * soft)))
            for i in range(size):
                h[i] = _exp(ph[i] / (1.0 + abs(ph[i] * soft)))
        for j in range(1, bins):
            w, h, w0, h0 = cw[j], ch[j], cw[j - 1], ch[j - 1]
            for i in range(size):
                w[i] += w0[i]
            for i in range(size):
                h[i] += h0[i]
        for j in range(bins - 1):
            pj, dj = p[2 * bins + j, start : start + size], dd[j]
            for i in range(size):
                dj[i] = pj[i]
        for i in range(size):
            xi = np.float64(xs[i])
            sx = 2.0 * bound / cw[bins - 1, i]
            sy = 2.0 * bound / ch[bins - 1, i]
            k = 0  # the bin of x: the number of right edges below it
            for j in range(bins):
                k += cw[j, i] * sx - bound < xi
            k1 = min(k, bins - 1)
            x0 = -bound
            y0 = -bound
            x1 = 0.0
            y1 = 0.0
            for j in range(bins):  # select, not index: the loop vectorises over i
                xr = cw[j, i] * sx - bound
                yr = ch[j, i] * sy - bound
                x0 = xr if j == k1 - 1 else x0
                y0 = yr if j == k1 - 1 else y0
                x1 = xr if j == k1 else x1
                y1 = yr if j == k1 else y1
            g0 = 0.0
            g1 = 0.0
            for j in range(bins - 1):
                a = dd[j, i]
                g0 = a if j == k1 - 1 else g0
                g1 = a if j == k1 else g1
            d0 = _exp(g0 / (1.0 + abs(g0 * soft_d)))
            d1 = _exp(g1 / (1.0 + abs(g1 * soft_d)))
            d0 = d0 if k1 > 0 else 1.0  # the derivative at the two ends is 1
            d1 = d1 if k1 < bins - 1 else 1.0
            slope_k = (y1 - y0) / (x1 - x0)
            z = (xi - x0) / (x1 - x0)
            zz = z * (1.0 - z)
            num = slope_k * z * z + d0 * zz
            y = y0 + (y1 - y0) * num / (slope_k + (d0 + d1 - 2.0 * slope_k) * zz)
            ys[i] = y if (xi > -bound) & (k < bins) else xi


_BINS8 = 8  # the default energy_bins: a specialised kernel (2x faster than a variable count)


@njit(**_JIT)
def _rqs_8(x, p, bound, slope, out):
    rows = p.shape[0] // x.shape[0]
    for f in range(x.shape[0]):  # each feature: its rows of p, C-contiguous
        _rqs_block(x[f], p[f * rows : (f + 1) * rows], _BINS8, bound, slope, out[f])


@njit(**_JIT)
def _rqs_any(x, p, bins, bound, slope, out):
    rows = p.shape[0] // x.shape[0]
    for f in range(x.shape[0]):
        _rqs_block(x[f], p[f * rows : (f + 1) * rows], bins, bound, slope, out[f])


def rqs_forward(x: np.ndarray, p: np.ndarray, bins: int, bound: float, slope: float) -> np.ndarray:
    """The monotonic rational-quadratic spline of ``models._rqs_forward`` on the points x
    (n, M) (n features of M points each, C-contiguous), the parameters of feature f in the
    rows ``f (3 bins - 1)`` to ``(f + 1) (3 bins - 1)`` of p (n (3 bins - 1), M)
    (unnormalised widths, heights, inner log-derivatives): the layout of a masked network's
    output transposed. Returns y (n, M) in x's dtype."""
    if x.ndim != 2 or p.ndim != 2 or p.shape != (x.shape[0] * (3 * bins - 1), x.shape[1]):
        raise ValueError(
            f"rqs_forward: x must be (n, M) and p (n * (3 bins - 1), M) = "
            f"({x.shape[0] * (3 * bins - 1)}, {x.shape[-1]}); got {x.shape} and {p.shape}."
        )
    out = np.empty_like(x)
    if bins == _BINS8:
        _rqs_8(x, p, float(bound), float(slope), out)
    else:
        _rqs_any(x, p, int(bins), float(bound), float(slope), out)
    return out
