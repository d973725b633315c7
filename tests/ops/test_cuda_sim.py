"""The CUDA kernels on greenai_cuda_sim: the simulator itself, and the kernels' paths the
device-parametrised tests (``device="cuda-sim"``) do not reach: misaligned and odd-sized
inputs (scalar paths), block-wide reductions, multi-block per-tensor scales, k-tiling of
the matmul, every memory access checked against guard pages, and results that do not
depend on the order blocks and threads run in.

Under :func:`simulated_cuda.simulate` CPU tensors take greenai's CUDA path, so these go
through the same Python glue as CUDA tensors on a GPU. greenai_cuda_sim is built only with
``-Ccmake.define.GREENAI_CUDA_SIM=ON``; without it this module is skipped.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch
from simulated_cuda import MISSING, SIM_STREAM, simulate
from test_quant import _assert_linear_close, _code_magnitude

from greenai import ops
from greenai.ops import quant_reference
from greenai.ops import sparse_reference as sref

sim = pytest.importorskip("greenai_cuda_sim", reason=MISSING)

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}


@pytest.fixture(autouse=True)
def forward_order() -> Iterator[None]:
    sim.set_order("forward")
    yield
    sim.set_order("forward")


@pytest.fixture
def simulated() -> Iterator[None]:
    with simulate():
        sim.take_launches()
        yield
        launches = sim.take_launches()
    assert launches, "no kernel ran on the simulator"
    assert {launch["stream"] for launch in launches} == {SIM_STREAM}


def offset_copy(t: torch.Tensor, elements: int = 1) -> torch.Tensor:
    """t's values in storage that starts `elements` elements past an aligned allocation, so
    the kernels see a pointer that is not 16-byte aligned."""
    flat = torch.empty(t.numel() + elements, dtype=t.dtype)
    out = flat[elements:].view(t.shape)
    out.copy_(t)
    return out


# --- the simulator ----------------------------------------------------------------------------


def test_warp_shuffles_follow_cuda_semantics() -> None:
    out = sim.selftest("reduce")  # 64 threads, two warps
    for t in range(64):
        lane = t % 32
        down = lane  # shift-down tree: lanes past the end keep their own value
        vals = list(range(32))
        for o in (16, 8, 4, 2, 1):
            vals = [v + (vals[i + o] if i + o < 32 else v) for i, v in enumerate(vals)]
        down = vals[lane]
        assert out[3 * t : 3 * t + 3] == [sum(range(32)), down, (lane + 1) % 32]


@pytest.mark.parametrize("order", ["forward", "reverse", "random"])
def test_a_missing_syncthreads_is_caught_by_the_thread_order(order: str) -> None:
    sim.set_order(order, 7)
    want = [(t + 1) % 64 + 1 for t in range(64)]
    assert sim.selftest("neighbour") == want
    # the planted bug reads its neighbour's slot before it is written, at least for some
    # threads, whatever the order
    assert sim.selftest("neighbour_unsynced") != want


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("shuffle_after_exit", "after 1 lanes of warp 0 exited"),
        ("partial_warp_shuffle", "partial warp"),
        ("divergent_barrier", "__syncthreads\\(\\) after 16 threads"),
        ("misaligned_load", "misaligned __ldg"),
        ("too_many_threads", "cudaErrorInvalidConfiguration"),
    ],
)
def test_kernel_bugs_raise(name: str, message: str) -> None:
    with pytest.raises(RuntimeError, match=message):
        sim.selftest(name)


def _selftest_in_child(name: str) -> subprocess.CompletedProcess[bytes]:
    code = f"import greenai_cuda_sim; greenai_cuda_sim.selftest({name!r})"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=120, check=False
    )


def test_shared_memory_past_the_launch_size_faults() -> None:
    proc = _selftest_in_child("shared_overflow")
    assert proc.returncode == -11, proc.stderr.decode()  # SIGSEGV on the guard page


@pytest.mark.skipif(not sim.ubsan, reason="greenai_cuda_sim was built without UBSan")
def test_a_misaligned_vector_store_stops_the_process_under_ubsan() -> None:
    proc = _selftest_in_child("misaligned_store")
    assert proc.returncode != 0
    assert b"misaligned address" in proc.stderr, proc.stderr.decode()


def test_unknown_order_and_selftest_are_rejected() -> None:
    with pytest.raises(ValueError, match="order must be"):
        sim.set_order("sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no self-test named 'nope'"):
        sim.selftest("nope")


# --- quantization kernels through greenai.ops ---------------------------------------------------


def assert_quantize_matches(w: torch.Tensor, bits: int, group: int | None, sym: bool) -> None:
    per_tensor = group == -1
    q, scale, zp = ops.quantize(
        w, bits=bits, group_size=None if per_tensor else group, symmetric=sym, per_tensor=per_tensor
    )
    g = -1 if per_tensor else (group or (w.shape[1] if bits == 8 else 128))
    rq, rscale, rzp = quant_reference.quantize(w, bits, g, sym)
    assert torch.equal(q, rq)
    assert torch.equal(scale, rscale)
    assert (zp is None) == sym
    assert zp is None or torch.equal(zp, rzp)
    for dtype in DTYPES:
        got = ops.dequantize(offset_copy(q), scale, zp, bits=bits, dtype=dtype)
        assert torch.equal(got, quant_reference.dequantize(rq, rscale, rzp, bits, g, dtype))


@pytest.mark.usefixtures("simulated")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    ("n", "k", "bits", "group"),
    [
        (5, 33, 8, None),  # per channel, k no multiple of the vector width: scalar units
        (3, 4097, 8, None),  # long odd rows
        (4, 4096, 8, None),  # 256-thread teams: the block-wide reduction
        (6, 1024, 8, None),  # 64-thread teams, four to a block
        (5, 2048, 8, None),  # 128-thread teams, two to a block
        (2, 8192, 4, 256),
        (23, 1024, 8, -1),  # per tensor over several blocks: the atomics
        (7, 96, 8, -1),
        (9, 128, 4, 32),
    ],
)
@pytest.mark.parametrize("sym", [True, False], ids=["sym", "asym"])
@pytest.mark.parametrize("aligned", [True, False], ids=["aligned", "offset"])
def test_quantize_paths_match_the_reference(
    dtype: torch.dtype, n: int, k: int, bits: int, group: int | None, sym: bool, aligned: bool
) -> None:
    gen = torch.Generator().manual_seed(n * k)
    w = (torch.randn(n, k, generator=gen) * 3).to(dtype)
    w[0, : min(k, 5)] *= 1e3
    assert_quantize_matches(w if aligned else offset_copy(w), bits, group, sym)


@pytest.mark.usefixtures("simulated")
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("group", [None, -1], ids=["channel", "tensor"])
def test_non_finite_weights_raise(bad: float, group: int | None) -> None:
    w = torch.randn(6, 64)
    w[4, 17] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        ops.quantize(w, per_tensor=group == -1)


@pytest.mark.usefixtures("simulated")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    ("n", "k", "bits", "group"),
    [
        (37, 200, 8, None),  # k % 16 != 0: the scalar kernel
        (19, 4096, 8, None),  # several k-tiles through shared memory
        (19, 4096, 4, 128),
        (33, 96, 8, 32),
        (5, 64, 4, 64),
    ],
)
@pytest.mark.parametrize("m", [1, 2, 3, 4, 6, 11, 16])
@pytest.mark.parametrize("layout", ["aligned", "x-offset", "q-offset"])
def test_quantized_linear_paths_match_the_reference(
    dtype: torch.dtype, n: int, k: int, bits: int, group: int | None, m: int, layout: str
) -> None:
    gen = torch.Generator().manual_seed(m * k)
    q, scale, zp = ops.quantize(
        torch.randn(n, k, generator=gen), bits=bits, group_size=group, symmetric=False
    )
    x = torch.randn(m, k, generator=gen).to(dtype)
    bias = torch.randn(n, generator=gen)
    if layout == "x-offset":
        x = offset_copy(x)
    if layout == "q-offset":
        q = offset_copy(q)
    y = ops.quantized_linear(x, q, scale, zp, bits=bits, bias=bias)
    wq = ops.dequantize(q, scale, zp, bits=bits)
    _assert_linear_close(y, x, wq, bias, _code_magnitude(q, scale, zp, bits))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        # int4 per tensor: the format (csrc/formats.h) is int8-only there, as on the CPU
        (lambda: sim.quantize_cuda(0, 0, 4, 64, 4, -1, True, 0, 0, 0, 0, 0), r"-1 \(int8 only\)"),
        (lambda: sim.dequantize_cuda(0, 0, 0, 4, 64, 4, -1, 0, 0, 0), r"-1 \(int8 only\)"),
        (lambda: sim.quantize_cuda(0, 0, 4, 48, 4, 48, True, 0, 0, 0, 0, 0), "int4 needs k"),
        (lambda: sim.quantized_linear_cuda(0, 0, 1, 64, 0, 0, 0, 0, 4, 8, -1, 0, 0), "group"),
        (lambda: sim.quantize_cuda(0, 3, 4, 64, 8, 64, True, 0, 0, 0, 0, 0), "dtype code"),
        (lambda: sim.mask_2to4_cuda(0, 3, 4, 8, 0, 0), "dtype code"),
        (lambda: sim.linear_2to4_cuda(0, -1, 1, 8, 0, 0, 0, 4, 0, 0), "dtype code"),
    ],
)
def test_the_cuda_bindings_reject_what_the_formats_rule_out(
    call: Callable[[], None], message: str
) -> None:
    # checked before any launch, so the null pointers are never touched
    with pytest.raises(ValueError, match=message):
        call()


# --- every access checked against guard pages ----------------------------------------------


def guarded(t: torch.Tensor, front: bool, keep: list[object]) -> torch.Tensor:
    """A copy of t in memory that ends at (or, front, starts after) a PROT_NONE page."""
    buf = sim.GuardedBuffer(t.numel() * t.element_size(), front)
    keep.append(buf)
    out = torch.from_numpy(np.frombuffer(buf, dtype=np.uint8)).view(t.dtype).view(t.shape)
    out.copy_(t)
    return out


@pytest.mark.parametrize("front", [False, True], ids=["guard-after", "guard-before"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    ("n", "k", "bits", "group"), [(3, 33, 8, 33), (5, 96, 8, 32), (4, 4096, 8, -1), (3, 160, 4, 32)]
)
def test_quantize_kernels_stay_inside_their_buffers(
    front: bool, dtype: torch.dtype, n: int, k: int, bits: int, group: int
) -> None:
    keep: list[object] = []
    w = guarded((torch.randn(n, k) * 5).to(dtype), front, keep)
    rq, rscale, rzp = quant_reference.quantize(w, bits, group, False)
    q = guarded(torch.zeros_like(rq), front, keep)
    scale = guarded(torch.zeros_like(rscale).reshape(-1), front, keep)
    zp = guarded(torch.zeros_like(rzp).reshape(-1), front, keep)
    ws = guarded(torch.zeros(sim.cuda_quantize_workspace_bytes, dtype=torch.uint8), front, keep)
    sim.quantize_cuda(
        w.data_ptr(), CODES[dtype], n, k, bits, group, False, q.data_ptr(), scale.data_ptr(),
        zp.data_ptr(), ws.data_ptr(), 0,
    )  # fmt: skip
    assert ws[:4].view(torch.int32).item() == 0
    assert torch.equal(q, rq)
    assert torch.equal(scale, rscale.reshape(-1))
    assert torch.equal(zp, rzp.reshape(-1))
    out = guarded(torch.zeros(n, k, dtype=dtype), front, keep)
    sim.dequantize_cuda(
        q.data_ptr(), scale.data_ptr(), zp.data_ptr(), n, k, bits, group, out.data_ptr(),
        CODES[dtype], 0,
    )  # fmt: skip
    assert torch.equal(out, quant_reference.dequantize(rq, rscale, rzp, bits, group, dtype))
    if group == -1:
        return
    for m in (1, 5, 9):
        x = guarded(torch.randn(m, k).to(dtype), front, keep)
        bias = guarded(torch.randn(n), front, keep)
        y = guarded(torch.zeros(m, n, dtype=dtype), front, keep)
        sim.quantized_linear_cuda(
            x.data_ptr(), CODES[dtype], m, k, q.data_ptr(), scale.data_ptr(), zp.data_ptr(),
            bias.data_ptr(), n, bits, group, y.data_ptr(), 0,
        )  # fmt: skip
        want = quant_reference.quantized_linear(x, rq, rscale, rzp, bias, bits, group)
        tol = {torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}[dtype]
        assert torch.allclose(y.float(), want.float(), rtol=tol, atol=tol * k**0.5)


@pytest.mark.parametrize("front", [False, True], ids=["guard-after", "guard-before"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("n", "k"), [(1, 4), (3, 12), (5, 28), (9, 100)])
def test_sparse_kernels_stay_inside_their_buffers(
    front: bool, dtype: torch.dtype, n: int, k: int
) -> None:
    keep: list[object] = []
    w = guarded(torch.randn(n, k).to(dtype), front, keep)
    code = CODES[dtype]
    mask = guarded(torch.zeros(n, k, dtype=torch.bool), front, keep)
    sim.mask_2to4_cuda(w.data_ptr(), code, n, k, mask.data_ptr(), 0)
    assert torch.equal(mask, sref.mask_2to4(w))
    rvalues, rmeta = sref.compress_2to4(w)
    values = guarded(torch.zeros_like(rvalues), front, keep)
    meta = guarded(torch.zeros_like(rmeta), front, keep)
    sim.compress_2to4_cuda(w.data_ptr(), code, n, k, values.data_ptr(), meta.data_ptr(), 0)
    assert torch.equal(values, rvalues)
    assert torch.equal(meta, rmeta)
    dense = guarded(torch.zeros(n, k, dtype=dtype), front, keep)
    sim.decompress_2to4_cuda(values.data_ptr(), meta.data_ptr(), code, n, k, dense.data_ptr(), 0)
    assert torch.equal(dense, sref.decompress_2to4(rvalues, rmeta))
    norms = guarded(torch.zeros(k), front, keep)
    sim.channel_norms_cuda(w.data_ptr(), code, n, k, 1, 2, norms.data_ptr(), 0)
    torch.testing.assert_close(norms, sref.channel_norms(w, 2, 1), rtol=1e-6, atol=0)
    for m in (1, 3):
        x = guarded(torch.randn(m, k).to(dtype), front, keep)
        bias = guarded(torch.randn(n), front, keep)
        y = guarded(torch.zeros(m, n, dtype=dtype), front, keep)
        sim.linear_2to4_cuda(
            x.data_ptr(), code, m, k, values.data_ptr(), meta.data_ptr(), bias.data_ptr(), n,
            y.data_ptr(), 0,
        )  # fmt: skip
        want = sref.linear_2to4(x, rvalues, rmeta, bias)
        tol = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}[dtype]
        torch.testing.assert_close(y, want, rtol=tol, atol=tol)


# --- results do not depend on the schedule ---------------------------------------------------


@pytest.mark.usefixtures("simulated")
def test_results_do_not_depend_on_the_order_blocks_and_threads_run_in() -> None:
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(40, 4096, generator=gen)
    x = torch.randn(5, 4096, generator=gen)
    results = []
    for order, seed in [("forward", 0), ("reverse", 0), ("random", 1), ("random", 2)]:
        sim.set_order(order, seed)  # type: ignore[arg-type]
        q, scale, zp = ops.quantize(w, symmetric=False)
        qt, st, _ = ops.quantize(w, per_tensor=True)
        y = ops.quantized_linear(x, q, scale, zp)
        y4 = ops.quantized_linear(x, *ops.quantize(w, bits=4), bits=4)
        norms = ops.channel_norms(w, 2)
        results.append((q, scale, zp, qt, st, y, y4, norms))
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            assert torch.equal(a, b)


@pytest.mark.parametrize("bits", [8, 4])
def test_a_quantized_model_gives_the_same_outputs_on_the_cuda_path(bits: int) -> None:
    from greenai.compress import quantize

    gen = torch.Generator().manual_seed(bits)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 96), torch.nn.GELU(), torch.nn.Linear(96, 32)
    ).eval()
    x = torch.randn(5, 64, generator=gen)
    qmodel, _ = quantize(model, bits=bits, group_size=32)
    with torch.no_grad():
        on_cpu = qmodel(x)
        with simulate() as simulator:
            simulator.take_launches()
            on_cuda_path = qmodel(x)
            assert len(simulator.take_launches()) == 2  # one quantized_linear per layer
    torch.testing.assert_close(on_cuda_path, on_cpu, rtol=1e-5, atol=1e-5)


def test_sparse_and_pruned_models_come_out_the_same_on_the_cuda_path() -> None:
    from greenai.compress import prune_channels, sparsify_2to4

    gen = torch.Generator().manual_seed(5)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 40), torch.nn.ReLU(), torch.nn.Linear(40, 16)
    ).eval()
    x = torch.randn(3, 64, generator=gen)
    smodel, _ = sparsify_2to4(model, max_layer_error=1.0)  # random weights: ~40 % per layer
    _, want = prune_channels(model, 0.5, example_inputs=x)
    with torch.no_grad():
        on_cpu = smodel(x)
        with simulate() as simulator:
            simulator.take_launches()
            on_cuda_path = smodel(x)
            assert len(simulator.take_launches()) == 2  # one linear_2to4 per layer
            _, got = prune_channels(model, 0.5, example_inputs=x)
            assert simulator.take_launches(), "channel scores did not use the norms kernel"
    torch.testing.assert_close(on_cuda_path, on_cpu, rtol=1e-5, atol=1e-5)
    assert [layer.kept_out for layer in got.layers] == [layer.kept_out for layer in want.layers]
