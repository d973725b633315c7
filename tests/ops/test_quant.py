"""greenai.ops quantize / dequantize / quantized_linear against the pure-torch quant_reference.

Quantize and dequantize must match the reference bit for bit on every instruction set's
CPU kernels (and on CUDA, ``gpu``-marked); the matmul must match a float64 product of the
dequantized weight within float32 summation error.
"""

from __future__ import annotations

import math
import multiprocessing
import threading

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from greenai import _C, ops
from greenai.ops import quant, quant_reference

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
FLT_MIN = torch.finfo(torch.float32).tiny
# (bits, group_size, symmetric, per_tensor) as the public API spells them
SCHEMES = [
    (8, None, True, False),
    (8, None, False, False),
    (8, 32, True, False),
    (8, 64, False, False),
    (8, None, True, True),
    (8, None, False, True),
    (4, None, True, False),
    (4, 32, False, False),
    (4, 64, True, False),
]
SCHEME_IDS = [
    f"int{b}-{'tensor' if t else 'channel' if g is None and b == 8 else f'g{g or 128}'}-"
    f"{'sym' if s else 'asym'}"
    for b, g, s, t in SCHEMES
]


def _group(bits: int, group_size: int | None, per_tensor: bool, k: int) -> int:
    return quant._resolve_group(bits, group_size, per_tensor, torch.empty(1, k))


def _assert_quantize_matches(
    w: torch.Tensor, bits: int, group_size: int | None, symmetric: bool, per_tensor: bool
) -> None:
    q, scale, zero_point = ops.quantize(
        w, bits=bits, group_size=group_size, symmetric=symmetric, per_tensor=per_tensor
    )
    group = _group(bits, group_size, per_tensor, w.shape[1])
    rq, rscale, rzero = quant_reference.quantize(w.cpu(), bits, group, symmetric)
    assert torch.equal(q.cpu(), rq)
    assert torch.equal(scale.cpu(), rscale)
    if symmetric:
        assert zero_point is None
    else:
        assert zero_point is not None
        assert torch.equal(zero_point.cpu(), rzero)
    for dtype in DTYPES:
        got = ops.dequantize(q, scale, zero_point, bits=bits, dtype=dtype)
        want = quant_reference.dequantize(rq, rscale, rzero, bits, group, dtype)
        assert got.dtype == dtype
        assert torch.equal(got.cpu(), want)


# --- the format itself (reference, independent of the kernels) ------------------------------


def test_rounding_is_half_to_even_and_symmetric_codes_stop_at_127() -> None:
    # absmax 127 gives scale 1: the codes are the values, rounded half to even
    w = torch.tensor([[127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5]])
    q, scale, zero_point = ops.quantize(w)
    assert q.tolist() == [[127, 0, 2, 2, 0, -2, -2, 126]]
    assert scale.tolist() == [1.0]
    assert zero_point is None


def test_asymmetric_int8_uses_the_full_range_with_a_zero_point() -> None:
    w = torch.tensor([[0.0, 255.0, 127.5, 1.0]])  # range [0, 255]: scale 1
    q, scale, zero_point = ops.quantize(w, symmetric=False)
    assert scale.tolist() == [1.0]
    assert zero_point is not None
    assert zero_point.tolist() == [-128]
    assert q.tolist() == [[-128, 127, 0, -127]]  # 127.5 rounds to 128 (even) -> code 0
    assert ops.dequantize(q, scale, zero_point).tolist() == [[0.0, 255.0, 128.0, 1.0]]


def test_int4_packing_order_is_the_documented_block_layout() -> None:
    codes = torch.arange(64).remainder(15).sub(7).to(torch.int8).reshape(1, 64)
    packed = quant_reference.pack_int4(codes)
    assert packed.shape == (1, 32)
    assert packed.dtype == torch.uint8
    for block in range(2):
        for i in range(16):
            byte = int(packed[0, 16 * block + i])
            assert (byte & 0x0F) - 8 == int(codes[0, 32 * block + i])
            assert (byte >> 4) - 8 == int(codes[0, 32 * block + 16 + i])
    assert torch.equal(quant_reference.unpack_int4(packed), codes)


def test_symmetric_int4_codes_stay_within_minus7_to_7() -> None:
    w = torch.linspace(-3.0, 3.0, 128).reshape(1, 128)
    q, scale, _ = ops.quantize(w, bits=4)
    codes = quant_reference.unpack_int4(q)
    assert int(codes.min()) == -7
    assert int(codes.max()) == 7
    assert scale.shape == (1,)  # one group per row is per channel
    assert math.isclose(float(scale), 3.0 / 7, rel_tol=1e-6)


# --- kernels against the reference ----------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("bits", "group_size", "symmetric", "per_tensor"), SCHEMES, ids=SCHEME_IDS)
def test_kernels_match_reference_bit_for_bit(
    isa: str,
    device: str,
    dtype: torch.dtype,
    bits: int,
    group_size: int | None,
    symmetric: bool,
    per_tensor: bool,
) -> None:
    gen = torch.Generator().manual_seed(1)
    w = (torch.randn(23, 256, generator=gen) * 3).to(dtype)
    w[3] = 0.0  # an all-zero row
    w[5, :7] *= 1e4  # an outlier
    _assert_quantize_matches(w.to(device), bits, group_size, symmetric, per_tensor)


@given(
    n=st.integers(1, 19),
    blocks=st.integers(1, 6),
    bits=st.sampled_from([8, 4]),
    symmetric=st.booleans(),
    dtype=st.sampled_from(DTYPES),
    magnitude=st.sampled_from([1e-30, 1e-3, 1.0, 1e4, 1e30]),
    seed=st.integers(0, 2**31 - 1),
)
def test_random_shapes_match_reference(
    n: int,
    blocks: int,
    bits: int,
    symmetric: bool,
    dtype: torch.dtype,
    magnitude: float,
    seed: int,
) -> None:
    k = 32 * blocks
    gen = torch.Generator().manual_seed(seed)
    magnitude = min(magnitude, torch.finfo(dtype).max / 16)  # stay finite in float16
    w = (torch.randn(n, k, generator=gen) * magnitude).to(dtype)
    for isa in _C.cpu_isas():
        _C.set_cpu_isa(isa)
        try:
            for group_size in (None, 32):
                _assert_quantize_matches(w, bits, group_size, symmetric, False)
            if bits == 8:
                _assert_quantize_matches(w, bits, None, symmetric, True)
        finally:
            _C.set_cpu_isa(_C.cpu_isas()[0])


@pytest.mark.parametrize("k", [1, 3, 15, 17, 33, 100, 4097])
def test_odd_row_lengths_per_channel_int8(isa: str, k: int) -> None:
    w = torch.randn(5, k, generator=torch.Generator().manual_seed(k))
    for symmetric in (True, False):
        _assert_quantize_matches(w, 8, None, symmetric, False)
        _assert_quantize_matches(w, 8, None, symmetric, True)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_extreme_magnitudes(isa: str, dtype: torch.dtype) -> None:
    info = torch.finfo(dtype)
    w = torch.zeros(4, 64, dtype=dtype)
    w[0, 0], w[0, 1] = info.max, -info.max  # the asymmetric range would overflow float
    w[1, :3] = torch.tensor([info.tiny, -info.tiny, info.tiny / 4], dtype=dtype)  # subnormal
    w[2, 5] = info.max  # the rest of the row rounds to zero
    for symmetric in (True, False):
        for per_tensor in (False, True):
            _assert_quantize_matches(w, 8, None, symmetric, per_tensor)
        _assert_quantize_matches(w, 4, 32, symmetric, False)
    _q, scale, _ = ops.quantize(w, symmetric=False)
    assert torch.isfinite(scale).all()


def test_all_zero_weights_get_the_smallest_normal_scale_and_zero_codes(isa: str) -> None:
    w = torch.zeros(3, 64)
    q, scale, _ = ops.quantize(w)
    assert scale.tolist() == [FLT_MIN] * 3
    assert not q.any()
    assert not ops.dequantize(q, scale).any()


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("per_tensor", [False, True])
def test_non_finite_weights_are_rejected(isa: str, bad: float, per_tensor: bool) -> None:
    w = torch.randn(40, 64)
    w[17, 9] = bad
    with pytest.raises(ValueError, match=r"w contains NaN or Inf"):
        ops.quantize(w, per_tensor=per_tensor)
    if not per_tensor:
        with pytest.raises(ValueError, match=r"row 17"):
            ops.quantize(w)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("k", [16, 37, 64])
def test_non_finite_weights_are_rejected_anywhere_in_a_row(
    isa: str, dtype: torch.dtype, k: int
) -> None:
    """NaN of either sign and +-Inf, first, mid-row and last (a scalar tail when k is not a
    multiple of the vector width), for symmetric schemes (whose search looks only at
    magnitudes) and asymmetric ones."""
    schemes = [(8, None, True), (8, None, False)]
    if k % 32 == 0:
        schemes += [(8, 32, True), (4, 32, True), (4, 32, False)]
    for col in sorted({0, k // 2, k - 1}):
        for bad in (math.nan, -math.nan, math.inf, -math.inf):
            w = torch.randn(6, k, generator=torch.Generator().manual_seed(col)).to(dtype)
            w[3, col] = bad
            for bits, group_size, symmetric in schemes:
                with pytest.raises(ValueError, match=r"row 3"):
                    ops.quantize(w, bits=bits, group_size=group_size, symmetric=symmetric)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("absmax", [3 * FLT_MIN, 1e-30, 1.0, 3.0e38])
def test_int8_codes_at_rounding_ties_and_the_range_ends(
    isa: str, dtype: torch.dtype, absmax: float
) -> None:
    """Values whose products land on and next to every half-way point between codes, and
    +-absmax itself: the int8 kernels round the product to an integer and saturate, which
    must give the reference's clamped codes exactly, at every magnitude of scale."""
    absmax = min(absmax, torch.finfo(dtype).max)
    halves = torch.arange(-255, 256, dtype=torch.float64) / 2  # -127.5 .. 127.5
    base = (halves / 127 * absmax).to(torch.float32)
    up = torch.nextafter(base, torch.tensor(math.inf))
    down = torch.nextafter(base, torch.tensor(-math.inf))
    row = torch.cat([base, up, down, torch.tensor([absmax, -absmax])])
    row = row.clamp(-absmax, absmax).to(dtype)
    w = torch.stack([row, row.flip(0), -row])  # 1535 columns: a scalar tail on every ISA
    for symmetric in (True, False):
        for per_tensor in (False, True):
            _assert_quantize_matches(w, 8, None, symmetric, per_tensor)
        _assert_quantize_matches(w[:, :1504], 8, 32, symmetric, False)


def test_non_contiguous_weights_quantize_like_contiguous_ones() -> None:
    w = torch.randn(128, 64).T  # (64, 128), strided
    assert not w.is_contiguous()
    got = ops.quantize(w, bits=4)
    want = ops.quantize(w.contiguous(), bits=4)
    for a, b in zip(got, want, strict=True):
        assert (a is None and b is None) or torch.equal(a, b)


# --- quantized_linear ------------------------------------------------------------------------


def _code_magnitude(
    q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None, bits: int
) -> torch.Tensor:
    """(|code| + |zero point| + nibble offset) * scale per weight: the size of the terms the
    kernels add (they fold the zero point into one product with the sum of x)."""
    codes = (quant_reference.unpack_int4(q) if bits == 4 else q).double().abs().cpu()
    offset = 8.0 if bits == 4 else 0.0
    z = 0.0 if zero_point is None else _per_weight(zero_point.double().abs(), codes.shape)
    return (codes + z + offset) * _per_weight(scale.double(), codes.shape)


def _per_weight(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """A per-tensor, per-channel or per-group tensor expanded to one value per weight."""
    n, k = shape
    t = t.cpu()
    if t.dim() == 0:
        return t.expand(n, k)
    if t.dim() == 1:
        return t[:, None].expand(n, k)
    return t.repeat_interleave(k // t.shape[1], dim=1)


def _assert_linear_close(
    y: torch.Tensor,
    x: torch.Tensor,
    w: torch.Tensor,
    bias: torch.Tensor | None,
    magnitude_w: torch.Tensor,
) -> None:
    """Within float32 summation error of the float64 product of the dequantized weight w,
    plus the output's rounding; magnitude_w bounds the size of the summed terms."""
    x64, w64 = x.double().cpu(), w.double().cpu()
    want = x64 @ w64.T + (0 if bias is None else bias.double().cpu())
    magnitude = x64.abs() @ magnitude_w.T + (0 if bias is None else bias.double().abs().cpu())
    k = x.shape[-1]
    out_eps = {torch.float32: 0.0, torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}[y.dtype]
    bound = magnitude * ((2 * k + 4) * 2.0**-24) + want.abs() * out_eps + 1e-30
    err = (y.double().cpu() - want).abs()
    assert y.dtype == x.dtype
    assert y.shape == (*x.shape[:-1], w.shape[0])
    worst = err.argmax() if err.numel() else 0
    assert bool((err <= bound).all()), (
        f"max error {float(err.max()):.3g}, bound there {float(bound.flatten()[worst]):.3g}"
    )


@pytest.mark.parametrize("m", [0, 1, 2, 3, 4, 5, 7, 16, 33])
@pytest.mark.parametrize(("bits", "group_size", "symmetric", "per_tensor"), SCHEMES, ids=SCHEME_IDS)
def test_quantized_linear_matches_dequantized_product(
    isa: str,
    device: str,
    m: int,
    bits: int,
    group_size: int | None,
    symmetric: bool,
    per_tensor: bool,
) -> None:
    gen = torch.Generator().manual_seed(m)
    w = torch.randn(37, 192, generator=gen)
    q, scale, zero_point = ops.quantize(
        w.to(device), bits=bits, group_size=group_size, symmetric=symmetric, per_tensor=per_tensor
    )
    wq = ops.dequantize(q, scale, zero_point, bits=bits)
    mag = _code_magnitude(q, scale, zero_point, bits)
    for dtype in DTYPES:
        x = torch.randn(m, 192, generator=gen).to(dtype).to(device)
        bias = torch.randn(37, generator=gen).to(dtype).to(device)
        y = ops.quantized_linear(x, q, scale, zero_point, bits=bits, bias=bias)
        _assert_linear_close(y, x, wq, bias, mag)
        y = ops.quantized_linear(x, q, scale, zero_point, bits=bits)
        _assert_linear_close(y, x, wq, None, mag)


@pytest.mark.parametrize("k", [1, 7, 33, 257])
@pytest.mark.parametrize("m", [5, 17, 70])
def test_bf16_activations_with_odd_in_features_and_many_rows(isa: str, k: int, m: int) -> None:
    """bf16 x at more than 4 rows takes the bf16 dot-product kernel where the CPU has one;
    it pairs elements along k (odd k pads a zero) and chunks x by 64 rows."""
    gen = torch.Generator().manual_seed(k * 100 + m)
    w = torch.randn(29, k, generator=gen)
    x = torch.randn(m, k, generator=gen).to(torch.bfloat16)
    bias = torch.randn(29, generator=gen)
    for symmetric in (True, False):
        q, scale, zero_point = ops.quantize(w, symmetric=symmetric)
        wq = ops.dequantize(q, scale, zero_point)
        y = ops.quantized_linear(x, q, scale, zero_point, bias=bias.to(torch.bfloat16))
        _assert_linear_close(
            y, x, wq, bias.to(torch.bfloat16), _code_magnitude(q, scale, zero_point, 8)
        )


@pytest.mark.parametrize("k", [1, 7, 31, 33, 257])
def test_quantized_linear_odd_in_features(isa: str, k: int) -> None:
    w = torch.randn(9, k)
    for symmetric in (True, False):
        q, scale, zero_point = ops.quantize(w, symmetric=symmetric)
        wq = ops.dequantize(q, scale, zero_point)
        mag = _code_magnitude(q, scale, zero_point, 8)
        for m in (1, 3, 6):
            x = torch.randn(m, k)
            y = ops.quantized_linear(x, q, scale, zero_point)
            _assert_linear_close(y, x, wq, None, mag)


def test_quantized_linear_takes_leading_dims_and_strided_x(isa: str) -> None:
    w = torch.randn(24, 64)
    q, scale, _ = ops.quantize(w, bits=4, group_size=32)
    wq = ops.dequantize(q, scale, bits=4)
    x = torch.randn(2, 3, 128)[..., ::2]  # (2, 3, 64), strided
    y = ops.quantized_linear(x, q, scale, bits=4)
    assert y.shape == (2, 3, 24)
    mag = _code_magnitude(q, scale, None, 4)
    _assert_linear_close(y.reshape(6, 24), x.reshape(6, 64), wq, None, mag)


def test_nan_activations_propagate_to_their_row_only() -> None:
    w = torch.randn(8, 64)
    q, scale, _ = ops.quantize(w)
    x = torch.randn(3, 64)
    x[1, 5] = math.nan
    y = ops.quantized_linear(x, q, scale)
    assert torch.isnan(y[1]).all()
    assert torch.isfinite(y[[0, 2]]).all()


def test_large_layer_int8_error_is_no_worse_than_float_per_channel_quantization() -> None:
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(1024, 1024, generator=gen)
    x = torch.randn(1, 1024, generator=gen)
    q, scale, _ = ops.quantize(w)
    y = ops.quantized_linear(x, q, scale)
    # per-channel fake quantization with float math, as torch's own ops do it
    fake = torch.fake_quantize_per_channel_affine(
        w, w.abs().amax(1) / 127, torch.zeros(1024, dtype=torch.int32), 0, -127, 127
    )
    exact = x.double() @ w.double().T
    ours = (y.double() - exact).norm() / exact.norm()
    theirs = ((x @ fake.T).double() - exact).norm() / exact.norm()
    assert ours <= theirs * 1.01


# --- threads, processes -----------------------------------------------------------------------


def test_results_do_not_depend_on_the_thread_count() -> None:
    w = torch.randn(301, 512)
    x = torch.randn(3, 512)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            q, scale, zero_point = ops.quantize(w, symmetric=False)
            results.append((q, scale, zero_point, ops.quantized_linear(x, q, scale, zero_point)))
    finally:
        torch.set_num_threads(before)
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            assert torch.equal(a, b)


def test_concurrent_calls_from_python_threads_are_correct() -> None:
    w = torch.randn(2000, 256)
    want = ops.quantize(w)[0]
    x = torch.randn(1, 256)
    q, scale, _ = ops.quantize(w)
    want_y = ops.quantized_linear(x, q, scale)
    errors: list[str] = []

    def worker() -> None:
        for _ in range(20):
            if not torch.equal(ops.quantize(w)[0], want):
                errors.append("quantize")
            if not torch.equal(ops.quantized_linear(x, q, scale), want_y):
                errors.append("linear")

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors


def _quantize_in_child(queue: multiprocessing.Queue[list[int]]) -> None:
    q, _, _ = ops.quantize(torch.arange(512.0).reshape(4, 128))
    queue.put(q.sum(dim=1).tolist())


def test_kernels_work_in_a_forked_child_after_the_parent_used_them() -> None:
    ops.quantize(torch.randn(4096, 256))  # the parent's pool has workers now
    ctx = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[list[int]] = ctx.Queue()
    child = ctx.Process(target=_quantize_in_child, args=(queue,))
    child.start()
    got = queue.get(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == 0
    want = ops.quantize(torch.arange(512.0).reshape(4, 128))[0].sum(dim=1).tolist()
    assert got == want
