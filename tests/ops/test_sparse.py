"""greenai.ops' pruning and 2:4 sparsity ops against the pure-torch reference.

Mask, compress and decompress must match :mod:`greenai.ops.sparse_reference` bit for bit on
every instruction set's CPU kernels and every dtype (and on CUDA, ``gpu``-marked); norms and
the matmul must match a float64 computation within the rounding their float32 arithmetic
allows.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from greenai import _C, ops
from greenai.ops import sparse_reference as ref

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# odd numbers of groups per row, rows shorter and longer than a SIMD step (16 / 32 elements)
SHAPES = [(1, 4), (3, 12), (5, 28), (7, 36), (2, 64), (9, 100), (16, 260), (33, 132)]
NAN, INF = float("nan"), float("inf")


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int32 if t.dtype == torch.float32 else torch.int16)


def special_weight(n: int, k: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    """Random values with rows of ties, signed zeros, huge and tiny magnitudes, NaN and Inf."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=gen)
    big = torch.finfo(dtype).max / 2
    tiny = torch.finfo(dtype).smallest_normal / 4  # subnormal in dtype
    rows = [
        [1.0, 1.0, 1.0, 1.0],
        [-0.0, 0.0, -0.0, 0.0],
        [0.0, -0.0, 0.0, 0.0],
        [-2.0, 2.0, 2.0, -2.0],
        [big, -big, big, 1.0],
        [tiny, -tiny, 2 * tiny, 0.0],
        [NAN, 1.0, INF, NAN],
        [-INF, INF, 3.0, NAN],
        [0.5, -1.0, 0.5, 1.0],
    ]
    for i in range(n * k // 4):
        if i % 3 == 0:
            r, g = divmod(i, k // 4)
            w[r, 4 * g : 4 * g + 4] = torch.tensor(rows[(i // 3) % len(rows)])
    return w.to(dtype)


def assert_2to4_matches(w: torch.Tensor) -> None:
    mask = ops.mask_2to4(w)
    assert mask.dtype == torch.bool
    assert torch.equal(mask.cpu(), ref.mask_2to4(w.cpu()))
    values, meta = ops.compress_2to4(w)
    rvalues, rmeta = ref.compress_2to4(w.cpu())
    assert values.dtype == w.dtype
    assert torch.equal(bits(values).cpu(), bits(rvalues))
    assert torch.equal(meta.cpu(), rmeta)
    dense = ops.decompress_2to4(values, meta)
    assert torch.equal(bits(dense).cpu(), bits(ref.decompress_2to4(rvalues, rmeta)))
    pruned = torch.where(mask, w, torch.zeros_like(w))
    assert torch.equal(bits(dense), bits(pruned))


# --- the format itself (reference, independent of the kernels) ----------------------------------


def test_the_two_largest_magnitudes_are_kept_and_ties_go_to_the_lower_index() -> None:
    w = torch.tensor([[1.0, -3.0, 2.0, 0.5, 1.0, 1.0, 1.0, 1.0, -0.0, 0.0, 0.0, -0.0]])
    assert ops.mask_2to4(w).int().tolist() == [[0, 1, 1, 0, 1, 1, 0, 0, 1, 1, 0, 0]]
    values, meta = ops.compress_2to4(w)
    assert values.tolist() == [[-3.0, 2.0, 1.0, 1.0, -0.0, 0.0]]
    assert torch.equal(
        torch.signbit(values), torch.tensor([[True, False, False, False, True, False]])
    )
    # nibbles i0 | i1 << 2: 1 | 2 << 2 = 9, 0 | 1 << 2 = 4 (even group low), then 4 and a zero pad
    assert meta.tolist() == [[9 | 4 << 4, 4]]


def test_nan_ranks_above_inf_and_nans_tie() -> None:
    w = torch.tensor([[INF, NAN, 5.0, NAN, NAN, NAN, NAN, NAN, 1.0, -INF, INF, 2.0]])
    assert ops.mask_2to4(w).int().tolist() == [[0, 1, 0, 1, 1, 1, 0, 0, 0, 1, 1, 0]]


def test_meta_is_the_2_bit_position_of_each_value_in_order() -> None:
    w = special_weight(5, 64, torch.float32)
    values, meta = ops.compress_2to4(w)
    stream = int.from_bytes(bytes(meta[2].tolist()), "little")
    positions = [(stream >> (2 * j)) & 3 for j in range(values.shape[1])]
    for j, pos in enumerate(positions):
        assert bits(values[2, j]) == bits(w[2, 4 * (j // 2) + pos])


# --- kernels against the reference --------------------------------------------------------------


def test_every_isa_name_runs_its_sparse_kernel_table(isa: str) -> None:
    # quant's ISA names include variants of AVX-512: avx512_bf16 has its own sparse table (the
    # AVX-512 one plus a bfloat16 matmul), any other avx512* the AVX-512 one; never generic
    want = isa if isa == "avx512_bf16" or not isa.startswith("avx512") else "avx512"
    assert _C.sparse_cpu_isa() == want


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("n", "k"), SHAPES)
def test_2to4_bit_exact_on_every_isa(isa: str, dtype: torch.dtype, n: int, k: int) -> None:
    assert_2to4_matches(special_weight(n, k, dtype))
    assert_2to4_matches(torch.randn(n, k).to(dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_2to4_on_device(device: str, dtype: torch.dtype) -> None:
    for n, k in SHAPES:
        assert_2to4_matches(special_weight(n, k, dtype).to(device))


@given(
    n=st.integers(1, 40),
    groups=st.integers(1, 70),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**31 - 1),
    levels=st.sampled_from([0, 3, 1000]),
)
def test_2to4_random_shapes_and_ties(
    n: int, groups: int, dtype: torch.dtype, seed: int, levels: int
) -> None:
    gen = torch.Generator().manual_seed(seed)
    if levels:  # few distinct values: many ties, signs included
        w = (torch.randint(-levels, levels + 1, (n, 4 * groups), generator=gen) / 2).to(dtype)
    else:
        w = torch.randn(n, 4 * groups, generator=gen).to(dtype)
    assert_2to4_matches(w)


def test_empty_weights_give_empty_results() -> None:
    for shape in [(0, 8), (5, 0)]:
        w = torch.empty(shape)
        assert ops.mask_2to4(w).shape == shape
        values, meta = ops.compress_2to4(w)
        assert values.shape == (shape[0], shape[1] // 2)
        assert meta.shape == (shape[0], (shape[1] + 7) // 8)
        assert ops.decompress_2to4(values, meta).shape == shape
    values, meta = ops.compress_2to4(torch.randn(3, 16))
    assert ops.linear_2to4(torch.empty(0, 16), values, meta).shape == (0, 3)
    assert ops.linear_2to4(torch.empty(2, 0, 16), values, meta).shape == (2, 0, 3)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_non_contiguous_weights_are_copied_first(isa: str, dtype: torch.dtype) -> None:
    w = special_weight(72, 24, dtype)
    t = w.T  # (24, 72), strided: K = 72 runs a whole SIMD step and a scalar tail
    assert not t.is_contiguous()
    assert torch.equal(ops.mask_2to4(t), ref.mask_2to4(t.contiguous()))
    values, meta = ops.compress_2to4(t)
    rvalues, rmeta = ref.compress_2to4(t.contiguous())
    assert torch.equal(bits(values), bits(rvalues))
    assert torch.equal(meta, rmeta)
    for x in (torch.randn(72, 5).to(dtype).T, torch.randn(3, 144).to(dtype)[:, ::2]):
        assert not x.is_contiguous()
        torch.testing.assert_close(
            ops.linear_2to4(x, values, meta),
            ops.linear_2to4(x.contiguous(), values, meta),
            rtol=0,
            atol=0,
            equal_nan=True,
        )


def test_decompress_defines_nibbles_outside_the_format(isa: str) -> None:
    """i0 > i1 places both values; i0 == i1 keeps v1 there (linear_2to4 adds both products)."""
    values = torch.tensor([[1.0, 2.0, 3.0, 4.0] * 8])  # 16 groups: SIMD and scalar paths
    meta = torch.full((1, 8), 0x1 | 0x5 << 4, dtype=torch.uint8)  # (i0=1, i1=0), (1, 1)
    want = ref.decompress_2to4(values, meta)
    assert want[0, :8].tolist() == [2.0, 1.0, 0.0, 0.0, 0.0, 4.0, 0.0, 0.0]
    assert torch.equal(ops.decompress_2to4(values, meta), want)
    x = torch.arange(64.0)[None]
    even = sum(1 * (4 * g + 1) + 2 * (4 * g) for g in range(0, 16, 2))
    odd = sum((3 + 4) * (4 * g + 1) for g in range(1, 16, 2))
    assert ops.linear_2to4(x, values, meta).item() == even + odd


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_decompress_and_linear_of_every_meta_byte(isa: str, dtype: torch.dtype) -> None:
    """Random meta bytes, nibbles outside the format included, through every SIMD step and
    tail: decompress matches the reference bit for bit, linear_2to4 adds both products of a
    nibble with i0 == i1 (computed here in float64)."""
    gen = torch.Generator().manual_seed(4)
    for k in (8, 12, 24, 52, 68, 116, 252):  # 252: the bf16 kernel's 128- and 64-steps
        n = 9
        values = torch.randn(n, k // 2, generator=gen).to(dtype)
        meta = torch.randint(0, 256, (n, (k + 7) // 8), generator=gen, dtype=torch.uint8)
        if (k // 4) % 2:
            meta[:, -1] &= 15  # the format's zero pad after an odd last group
        dense = ops.decompress_2to4(values, meta)
        assert torch.equal(bits(dense), bits(ref.decompress_2to4(values, meta))), k
        nib = torch.stack([meta & 15, meta >> 4], dim=-1).reshape(n, -1)[:, : k // 4].long()
        cols = 4 * torch.arange(k // 4)
        i0, i1 = cols + (nib & 3), cols + (nib >> 2)
        v = values.double().reshape(n, k // 4, 2)
        for m in (1, 3, 5, 8, 12):
            x = torch.randn(m, k, generator=gen).to(dtype)
            xd = x.double()
            exact = (xd[:, i0] * v[:, :, 0]).sum(-1) + (xd[:, i1] * v[:, :, 1]).sum(-1)
            mag = (xd[:, i0].abs() * v[:, :, 0].abs()).sum(-1) + (
                xd[:, i1].abs() * v[:, :, 1].abs()
            ).sum(-1)
            tol = (k / 2 + 2) * torch.finfo(torch.float32).eps * mag
            tol = tol + torch.finfo(dtype).eps * mag + 1e-6
            y = ops.linear_2to4(x, values, meta)
            assert (y.double() - exact).abs().le(tol).all(), (k, m)


# --- linear_2to4 --------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("k", [4, 12, 20, 52, 84, 116, 196, 252, 2116])
def test_linear_direct_kernel_steps_and_tails(isa: str, dtype: torch.dtype, k: int) -> None:
    """K with and without a half SIMD step (16 elements on AVX2, 32 on AVX-512, 64 and 128 on
    the avx512_bf16 bfloat16 kernel, which also walks k in chunks of 1024 to 8192 elements:
    2116) and an odd last group, for every row count of the direct kernel."""
    gen = torch.Generator().manual_seed(k)
    w = special_weight(21, k, torch.float32, seed=k).nan_to_num(0.0).clamp(-4, 4).to(dtype)
    values, meta = ops.compress_2to4(w)
    dense = ops.decompress_2to4(values, meta)
    for m in range(1, 13):
        x = torch.randn(m, k, generator=gen).to(dtype)
        y = ops.linear_2to4(x, values, meta)
        exact = x.double() @ dense.double().T
        assert (y.double() - exact).abs().le(linear_tolerance(x, dense, dtype) + 1e-6).all(), m


def linear_tolerance(x: torch.Tensor, w: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Bound on |y - y_exact|: float32 summation over K/2 products, plus rounding y to dtype."""
    k = w.shape[1]
    mag = x.double().abs() @ w.double().abs().T
    eps32 = torch.finfo(torch.float32).eps
    out_eps = torch.finfo(dtype).eps
    return (k / 2 + 2) * eps32 * mag + out_eps * mag + 1e-30


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_linear_matches_float64_for_every_batch(isa: str, dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(37, 100, generator=gen).to(dtype)  # 25 groups: SIMD body and scalar tail
    values, meta = ops.compress_2to4(w)
    dense = ops.decompress_2to4(values, meta)
    bias = torch.randn(37, generator=gen)
    for m in range(34):
        x = torch.randn(m, 100, generator=gen).to(dtype)
        y = ops.linear_2to4(x, values, meta, bias=bias)
        assert y.dtype == dtype
        assert y.shape == (m, 37)
        exact = x.double() @ dense.double().T + bias.double()
        assert (y.double() - exact).abs().le(linear_tolerance(x, dense, dtype) + 1e-6).all(), m


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_linear_on_device(device: str, dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(70, 132, generator=gen).to(dtype)
    values, meta = ops.compress_2to4(w.to(device))
    dense = ref.decompress_2to4(values.cpu(), meta.cpu())
    for m in (1, 3, 16, 17, 40):
        x = torch.randn(2, m, 132, generator=gen).to(dtype)
        y = ops.linear_2to4(x.to(device), values, meta).cpu()
        exact = x.double() @ dense.double().T
        assert (y.double() - exact).abs().le(linear_tolerance(x, dense, dtype) + 1e-6).all(), m


def test_results_do_not_depend_on_the_thread_count() -> None:
    w = special_weight(301, 68, torch.float32, seed=3)
    x = torch.randn(3, 68, generator=torch.Generator().manual_seed(3))
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            values, meta = ops.compress_2to4(w)
            results.append(
                (
                    ops.mask_2to4(w),
                    values,
                    meta,
                    ops.linear_2to4(x, values, meta),
                    ops.channel_norms(w, 2, 0),
                    ops.channel_norms(w, 1, 1),
                )
            )
    finally:
        torch.set_num_threads(before)
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)


# --- channel norms --------------------------------------------------------------------------------


def assert_norms_close(got: torch.Tensor, want: torch.Tensor) -> None:
    """float64 accumulation rounded once: within a few float32 ulps."""
    assert got.dtype == torch.float32
    assert torch.allclose(got.cpu(), want, rtol=4e-7, atol=0, equal_nan=True)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    "shape", [(7,), (5, 3), (33, 100), (8, 3, 3, 3), (4, 6, 5), (3, 20, 17), (2, 700, 1)]
)
def test_norms_match_float64_on_every_isa(
    isa: str, dtype: torch.dtype, shape: tuple[int, ...]
) -> None:
    w = torch.randn(shape).to(dtype)
    for p in (1, 2):
        for dim in range(min(2, len(shape))):
            assert_norms_close(ops.channel_norms(w, p, dim), ref.channel_norms(w, p, dim))


def test_norms_on_device(device: str) -> None:
    w = torch.randn(6, 10, 3, 3)
    for p in (1, 2):
        for dim in (0, 1):
            assert_norms_close(
                ops.channel_norms(w.to(device), p, dim), ref.channel_norms(w, p, dim)
            )


def test_norms_of_huge_and_tiny_values_stay_finite_and_nonzero(isa: str) -> None:
    w = torch.tensor([[1e38, 1e38, 1e38], [1e-40, 1e-40, 0.0], [3e38, 3e38, 0.0]])
    got = ops.channel_norms(w, 2, 0)
    assert got[0].item() == pytest.approx(3**0.5 * 1e38, rel=1e-6)
    assert got[1].item() == pytest.approx(2**0.5 * 1e-40, rel=1e-3)  # subnormal result
    assert got[2].item() == INF  # the norm itself is past float32's range
    assert ops.channel_norms(w, 1, 0)[0].item() == pytest.approx(3e38, rel=1e-6)
    assert ops.channel_norms(w, 1, 0)[2].item() == INF


def test_nan_and_inf_propagate_into_their_channel_only(isa: str) -> None:
    w = torch.ones(4, 40)
    w[1, 7] = NAN
    w[2, 39] = -INF
    for p in (1, 2):
        got = ops.channel_norms(w, p, 0)
        assert torch.isnan(got[1])
        assert got[2].item() == INF
        assert torch.isfinite(got[[0, 3]]).all()
        cols = ops.channel_norms(w, p, 1)
        assert torch.isnan(cols[7])
        assert cols[39].item() == INF
        assert torch.isfinite(cols[:7]).all()


def test_group_norms_is_the_norm_of_every_weight_a_group_removes() -> None:
    conv = torch.randn(8, 3, 3, 3)
    bias = torch.randn(8)
    nxt = torch.randn(5, 8, 1, 1)
    for p in (1, 2):
        got = ops.group_norms([(conv, 0), (bias, 0), (nxt, 1)], p)
        flat = torch.cat([conv.reshape(8, -1), bias[:, None], nxt.reshape(5, 8).T], dim=1)
        want = flat.double().norm(p=p, dim=1).float()
        assert torch.allclose(got, want, rtol=1e-6)
    with pytest.raises(ValueError, match=r"members\[1\] has 5 channels along dim 0"):
        ops.group_norms([(conv, 0), (nxt, 0)])
    with pytest.raises(ValueError, match="members is empty"):
        ops.group_norms([])


# --- compact --------------------------------------------------------------------------------------


def test_compact_keeps_the_given_slices() -> None:
    w = torch.randn(6, 4, 3, 3, dtype=torch.bfloat16)
    index = torch.tensor([0, 2, 5])
    out = ops.compact(w, index, 0)
    assert out.is_contiguous()
    assert torch.equal(out, w[[0, 2, 5]])
    assert torch.equal(ops.compact(w, torch.tensor([3, 1]), 1), w[:, [3, 1]])
    assert torch.equal(ops.compact(torch.arange(5.0), torch.tensor([4]), 0), torch.tensor([4.0]))
    assert ops.compact(w, torch.empty(0, dtype=torch.int64), 1).shape == (6, 0, 3, 3)
    with pytest.raises(ValueError, match=r"index holds 6, outside \[0, 6\) for w.shape\[0\]"):
        ops.compact(w, torch.tensor([6]), 0)
    with pytest.raises(ValueError, match=r"index holds -1"):
        ops.compact(w, torch.tensor([-1, 0]), 0)
    with pytest.raises(ValueError, match="duplicates"):
        ops.compact(w, torch.tensor([1, 1]), 0)
    with pytest.raises(TypeError, match=r"index must be a 1-D int64 tensor, not a torch.int32"):
        ops.compact(w, torch.tensor([1], dtype=torch.int32), 0)
    with pytest.raises(ValueError, match="dim must be 0 or 1"):
        ops.compact(torch.ones(3), torch.tensor([1]), 1)
