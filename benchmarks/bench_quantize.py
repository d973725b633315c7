"""greenai's quantization kernels against NumPy, torch and the memory-bandwidth bound.

1. Per-channel int8 quantization of an 11008x4096 float32 weight (absmax included, new
   outputs each call, as a user calls it): greenai vs NumPy, ``torch.quantize_per_channel``,
   the same torch ops eager and under ``torch.compile``, and the bound set by the copy
   bandwidth measured in this process. Goals: greenai / bound <= 1.5, torch.compile /
   greenai >= 3. Also int4 (groups of 128).
2. Batch-1 matrix-vector product with that weight: fp32 ``nn.Linear``, torch dynamic int8,
   torch's int4 CPU kernel and greenai int8 / int4, with each method's error against fp32
   and per-channel fake quantization in float as the accuracy yardstick. Goals: fp32 /
   greenai int8 >= 2.8, torch dynamic int8 / greenai int8 >= 1.0, torch int4 / greenai
   int4 >= 1.4, greenai int8 error <= the yardstick's.
3. Batches of 8 and 32. Goal: fp32 / greenai int8 >= 4 at batch 32.
4. On CUDA (when torch and greenai._C both have it): quantize and batch-1 matvec throughput
   against the copy bandwidth measured with ``torch.clone``. Goals: int8 matvec >= 80 %,
   int4 >= 70 % of it.

Weights are cold: each method cycles through enough copies of its weights that together
they exceed three times the last-level cache. Methods are interleaved across rounds and
each figure is the median of the rounds, so drift and other processes on the machine
weigh on every method alike. Ratios are printed, never asserted.

Run: ``python benchmarks/bench_quantize.py`` (about a minute on 2 cores; ``--quick``
for a smoke run on small shapes in under 20 s).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from bench_common import (
    MIB,
    Goal,
    copies_for,
    copy_bandwidth,
    l3_bytes,
    load_average,
    print_goals,
    print_machine,
    ratio_goal,
    time_interleaved,
)
from greenai import _C, ops

GROUP = 128

# torch.ao.quantization and the quantized-tensor constructors warn that they are deprecated
# on every call; the benchmark measures them as users still call them.
warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated.*")
warnings.filterwarnings("ignore", message=r".*quantize_per_tensor, torch\.quantize_per_channel.*")


# --- 1. quantization -------------------------------------------------------------------------


def numpy_quantize(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row symmetric int8 as a NumPy user writes it (np.round is half to even)."""
    scale = np.abs(w).max(axis=1) / np.float32(127)
    q = np.clip(np.round(w / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


def torch_quantize(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The same arithmetic as torch ops (torch.round is half to even too)."""
    scale = w.abs().amax(dim=1, keepdim=True) / 127
    q = torch.clamp(torch.round(w / scale), -127, 127).to(torch.int8)
    return q, scale.squeeze(1)


def bench_quantize(
    ws: Sequence[torch.Tensor], *, rounds: int, compile_: bool, goals: list[Goal]
) -> None:
    n, k = ws[0].shape
    c = len(ws)
    print(
        f"\n== 1. quantize {n}x{k} float32, cycling {c} copies ({c * 4 * n * k / MIB:.0f} MiB) =="
    )
    bw_np, bw_torch = copy_bandwidth(ws, rounds)
    bandwidth = max(bw_np, bw_torch)
    print(
        f"copy bandwidth (read+write): numpy copyto {bw_np / 1e9:.1f} GB/s, "
        f"torch copy_ {bw_torch / 1e9:.1f} GB/s; bound uses {bandwidth / 1e9:.1f} GB/s"
    )
    ws_np = [w.numpy() for w in ws]
    zero_points = torch.zeros(n, dtype=torch.int64)

    def torch_per_channel(w: torch.Tensor) -> torch.Tensor:
        scale = w.abs().amax(dim=1) / 127
        return torch.quantize_per_channel(w, scale, zero_points, 0, torch.qint8)

    methods: dict[str, Callable[[int], object]] = {
        "greenai int8": lambda i: ops.quantize(ws[i % c]),
        "numpy": lambda i: numpy_quantize(ws_np[i % c]),
        "torch.quantize_per_channel": lambda i: torch_per_channel(ws[i % c]),
        "torch ops, eager": lambda i: torch_quantize(ws[i % c]),
    }
    if compile_:
        compiled = torch.compile(torch_quantize)
        t0 = time.perf_counter()
        compiled(ws[0])
        print(f"torch.compile: first call (compilation) {time.perf_counter() - t0:.1f} s")
        methods["torch.compile"] = lambda i: compiled(ws[i % c])
    else:
        print("torch.compile: skipped (--quick; pass --compile to include it)")
    methods["greenai int4 g128"] = lambda i: ops.quantize(ws[i % c], bits=4, group_size=GROUP)

    ms = time_interleaved(methods, rounds=rounds)
    bound_ms = (4 * n * k + n * k + 4 * n) / bandwidth * 1e3
    bound4_ms = (4 * n * k + n * k // 2 + 4 * n * (k // GROUP)) / bandwidth * 1e3
    print(f"{'bandwidth bound, int8':<28} {bound_ms:9.2f} ms")
    print(f"{'bandwidth bound, int4 g128':<28} {bound4_ms:9.2f} ms")
    for name, t in ms.items():
        print(f"{name:<28} {t:9.2f} ms   {t / ms['greenai int8']:6.2f}x greenai int8")
    over_bound = ms["greenai int8"] / bound_ms
    print(f"greenai int8 / bound: {over_bound:.2f}  (goal <= 1.5)")
    print(f"greenai int4 / bound: {ms['greenai int4 g128'] / bound4_ms:.2f}")
    goals.append(ratio_goal("quantize int8: greenai / bandwidth bound", over_bound, "<=", 1.5))
    if "torch.compile" in ms:
        speedup = ms["torch.compile"] / ms["greenai int8"]
        print(f"torch.compile / greenai int8: {speedup:.2f}  (goal >= 3)")
        goals.append(ratio_goal("quantize int8: torch.compile / greenai", speedup, ">=", 3))


# --- 2, 3. matrix-vector and small batches ---------------------------------------------------


def torch_int4_pack(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Asymmetric int4 with groups of 128, packed for ``torch._weight_int4pack_mm_for_cpu``.

    The layout torch's own tests use (``_group_quantize_tensor`` in test_linalg.py): codes
    0..15 as int32 ``(N, K)``, and ``scales_and_zeros`` float ``(K // group, N, 2)`` with
    ``w ~= (code - 8) * scale + zero``. The CPU kernel ignores ``innerKTiles``.
    """
    n, k = w.shape
    groups = w.reshape(n, k // GROUP, GROUP)
    lo = groups.amin(dim=-1, keepdim=True)
    hi = groups.amax(dim=-1, keepdim=True)
    scale = (hi - lo).clamp(min=1e-6) / 15
    zero = lo + scale * 8
    codes = ((groups - lo) / scale).round().clamp(0, 15).to(torch.int32).reshape(n, k)
    scales_and_zeros = torch.cat([scale, zero], dim=-1).transpose(0, 1).contiguous()
    return torch._convert_weight_to_int4pack_for_cpu(codes, 2), scales_and_zeros


def torch_int4_available() -> str | None:
    """None when torch's CPU int4 kernel works and approximates ``x @ W.T``, else why not."""
    if not hasattr(torch, "_weight_int4pack_mm_for_cpu"):
        return f"torch {torch.__version__} has no _weight_int4pack_mm_for_cpu"
    try:
        gen = torch.Generator().manual_seed(1)
        w = torch.randn(64, 256, generator=gen)
        x = torch.randn(2, 256, generator=gen)
        packed, sz = torch_int4_pack(w)
        ys = {
            dtype: torch._weight_int4pack_mm_for_cpu(x.to(dtype), packed, GROUP, sz.to(dtype))
            for dtype in (torch.float32, torch.bfloat16)
        }
    except (RuntimeError, TypeError, AttributeError) as e:
        return f"{type(e).__name__}: {e}"
    ref = x @ w.T
    for dtype, y in ys.items():
        err = float((y.float() - ref).norm() / ref.norm())
        if not err < 0.2:  # int4 in groups of 128 lands near 0.1 on Gaussian weights
            return f"its {dtype} result is off x @ W.T by {err:.2f} (relative)"
    return None


def rel_err(y: torch.Tensor, ref: torch.Tensor) -> float:
    return float((y.double() - ref.double()).norm() / ref.double().norm())


def bench_linear(
    ws: Sequence[torch.Tensor],
    cache_bytes: int,
    *,
    rounds: int,
    inner: int,
    batches: Sequence[int],
    goals: list[Goal],
) -> None:
    n, k = ws[0].shape
    gen = torch.Generator().manual_seed(0)

    c8 = copies_for(n * k, cache_bytes)
    c4 = copies_for(n * k // 2, cache_bytes)
    print(
        f"\n== 2. linear {n}x{k}: copies fp32 {len(ws)} ({len(ws) * 4 * n * k / MIB:.0f} MiB), "
        f"int8 {c8} ({c8 * n * k / MIB:.0f} MiB), int4 {c4} ({c4 * n * k / 2 / MIB:.0f} MiB) =="
    )
    fp32 = []
    for w in ws:
        lin = nn.Linear(k, n, bias=False)
        lin.weight = nn.Parameter(w, requires_grad=False)
        fp32.append(lin)
    bf16 = [w.to(torch.bfloat16) for w in ws]
    g8 = [ops.quantize(ws[i % len(ws)]) for i in range(c8)]
    g4 = [ops.quantize(ws[i % len(ws)], bits=4, group_size=GROUP) for i in range(c4)]
    dyn = [
        torch.ao.quantization.quantize_dynamic(
            nn.Sequential(fp32[i % len(ws)]), {nn.Linear}, dtype=torch.qint8
        )
        for i in range(c8)
    ]
    int4_missing = torch_int4_available()
    t4 = [] if int4_missing else [torch_int4_pack(ws[i % len(ws)]) for i in range(c4)]
    # torch's int4 CPU kernel is fast only for bfloat16 activations (float32 and float16
    # take a path ~50x slower), so it is timed both ways and compared at its best.
    t4_bf16 = [(packed, sz.to(torch.bfloat16)) for packed, sz in t4]

    def methods_for(x: torch.Tensor) -> dict[str, Callable[[int], object]]:
        """The methods at x's batch; torch int4 with float32 activations only at batch 1,
        beyond which it is slower than fp32 by a wide margin (and would dominate the run)."""
        xb = x.to(torch.bfloat16)
        m: dict[str, Callable[[int], object]] = {
            "fp32 nn.Linear": lambda i: fp32[i % len(fp32)](x),
            "torch dynamic int8": lambda i: dyn[i % c8](x),
            "bf16 nn.Linear, bf16 x": lambda i: torch.nn.functional.linear(xb, bf16[i % len(bf16)]),
            "greenai int8": lambda i: ops.quantized_linear(x, *g8[i % c8]),
            "greenai int8, bf16 x": lambda i: ops.quantized_linear(xb, *g8[i % c8]),
            "greenai int4 g128": lambda i: ops.quantized_linear(x, *g4[i % c4], bits=4),
            "greenai int4 g128, bf16 x": lambda i: ops.quantized_linear(xb, *g4[i % c4], bits=4),
        }
        if not int4_missing:
            m["torch int4 g128, bf16 x"] = lambda i: torch._weight_int4pack_mm_for_cpu(
                xb, t4_bf16[i % c4][0], GROUP, t4_bf16[i % c4][1]
            )
            if x.shape[0] == 1:
                m["torch int4 g128"] = lambda i: torch._weight_int4pack_mm_for_cpu(
                    x, t4[i % c4][0], GROUP, t4[i % c4][1]
                )
        return m

    # Accuracy: 16 batch-1 products with copy 0 of every weight, against fp32.
    xs = torch.randn(16, k, generator=gen)
    errs = {}
    with torch.no_grad():
        ref = torch.cat([fp32[0](x[None]) for x in xs])
        for name in methods_for(xs[:1]):
            if name != "fp32 nn.Linear":
                ys = [methods_for(x[None])[name](0) for x in xs]
                errs[name] = rel_err(torch.cat(ys), ref)  # type: ignore[arg-type]
        scale = ws[0].abs().amax(dim=1) / 127
        fake = torch.fake_quantize_per_channel_affine(
            ws[0], scale, torch.zeros(n, dtype=torch.int32), 0, -127, 127
        )
        errs["fake-quant per-channel int8 (float)"] = rel_err(xs @ fake.T, ref)

    width = 26
    for batch in batches:
        x = torch.randn(batch, k, generator=gen)
        with torch.no_grad():
            ms = time_interleaved(methods_for(x), rounds=rounds, inner=inner if batch == 1 else 1)
        if batch == 1:
            print("-- batch-1 matrix-vector --")
        else:
            print(f"\n== 3. linear {n}x{k}, batch {batch} ==")
        base = ms["fp32 nn.Linear"]
        for name, t in ms.items():
            line = f"{name:<{width}} {t:8.3f} ms   fp32 / this {base / t:5.2f}"
            if batch == 1:  # memory-bound: how fast the weights stream in
                weight_bytes = {"fp32": 4, "bf16": 2}.get(name[:4], 1) * n * k
                weight_bytes //= 2 if "int4" in name else 1
                line += f"   {weight_bytes / (t * 1e-3) / 1e9:6.1f} GB/s of weights"
            print(line)
        if int4_missing and batch == 1:
            print(f"{'torch int4 g128':<{width}} unavailable: {int4_missing}")
        r8 = base / ms["greenai int8"]
        if batch == 1:
            rd = ms["torch dynamic int8"] / ms["greenai int8"]
            print(f"fp32 / greenai int8: {r8:.2f}  (goal >= 2.8)")
            print(f"torch dynamic int8 / greenai int8: {rd:.2f}  (goal >= 1.0)")
            goals.append(ratio_goal("matvec: fp32 / greenai int8", r8, ">=", 2.8))
            goals.append(ratio_goal("matvec: torch dyn int8 / greenai int8", rd, ">=", 1.0))
            if not int4_missing:
                same = ms["torch int4 g128"] / ms["greenai int4 g128"]
                same_bf16 = ms["torch int4 g128, bf16 x"] / ms["greenai int4 g128, bf16 x"]
                torch_best = min(ms["torch int4 g128"], ms["torch int4 g128, bf16 x"])
                ours_best = min(ms["greenai int4 g128"], ms["greenai int4 g128, bf16 x"])
                r4 = torch_best / ours_best
                print(f"torch int4 / greenai int4, float32 x: {same:.2f}; bf16 x: {same_bf16:.2f}")
                print(
                    f"torch int4 / greenai int4, each at its faster dtype: {r4:.2f}  (goal >= 1.4)"
                )
                goals.append(ratio_goal("matvec: torch int4 / greenai int4 (best)", r4, ">=", 1.4))
            print("relative error ||y - y_fp32|| / ||y_fp32|| (16 batch-1 products):")
            for name, e in errs.items():
                print(f"  {name:<36} {e:.6e}")
            yard = errs["fake-quant per-channel int8 (float)"]
            ok = errs["greenai int8"] <= yard
            # greenai's codes and scales are those of the fake quantization bit for bit; the
            # products differ only in float summation order, which moves the error by ~1e-7
            # of itself either way, so the comparison is also shown with that much slack.
            close = errs["greenai int8"] <= yard * (1 + 1e-4)
            print(f"greenai int8 err <= float per-channel err: {ok}")
            print(f"greenai int8 err <= float per-channel err * (1 + 1e-4): {close}")
            goals.append(Goal("matvec: greenai int8 err <= fake-quant err", ok, "True", ok))
            goals.append(
                Goal("matvec: greenai int8 err <= fake-quant err (+1e-4)", close, "True", close)
            )
        else:
            print(f"fp32 / greenai int8: {r8:.2f}" + ("  (goal >= 4)" if batch == 32 else ""))
            # With bf16 activations the avx512_bf16 kernels multiply in bf16 (products exact,
            # float32 sums); shown against both dense baselines.
            rb = ms["greenai int8, bf16 x"]
            print(
                f"bf16 x: fp32 / greenai int8 {base / rb:.2f}, "
                f"bf16 nn.Linear / greenai int8 {ms['bf16 nn.Linear, bf16 x'] / rb:.2f}"
            )
            if batch == 32:
                goals.append(ratio_goal("batch 32: fp32 / greenai int8", r8, ">=", 4))


# --- 4. CUDA ---------------------------------------------------------------------------------


def bench_cuda(n: int, k: int, *, rounds: int, goals: list[Goal]) -> dict[str, object] | None:
    """Section 4; returns what it printed, machine-readable (None when skipped): the device,
    the shape, the median ms of each method and the bytes each moves (``clone``: read + write,
    the bandwidth yardstick), for ``benchmarks/gpu_validation.py``."""
    if not torch.cuda.is_available():
        print("\n== 4. CUDA: skipped (torch.cuda.is_available() is False) ==")
        return None
    if not _C.build_info()["cuda"]:
        print("\n== 4. CUDA: skipped (greenai._C was built without CUDA) ==")
        return None
    dev = torch.device("cuda")
    props = torch.cuda.get_device_properties(dev)
    l2 = int(getattr(props, "L2_cache_size", 50 * MIB))
    c = copies_for(4 * n * k, l2)
    print(f"\n== 4. CUDA: {props.name}, L2 {l2 / MIB:.0f} MiB; {n}x{k}, {c} fp32 copies ==")
    gen = torch.Generator(device=dev).manual_seed(0)
    ws = [torch.randn(n, k, device=dev, generator=gen) for _ in range(c)]
    c8 = copies_for(n * k, l2)
    c4 = copies_for(n * k // 2, l2)
    g8 = [ops.quantize(ws[i % c]) for i in range(c8)]
    g4 = [ops.quantize(ws[i % c], bits=4, group_size=GROUP) for i in range(c4)]
    x = torch.randn(1, k, device=dev, generator=gen)

    def event_ms(methods: dict[str, Callable[[int], object]], inner: int) -> dict[str, float]:
        calls = dict.fromkeys(methods, 0)
        samples: dict[str, list[float]] = {name: [] for name in methods}
        for fn in methods.values():  # warm up
            fn(0)
        torch.cuda.synchronize()
        for r in range(rounds):
            for name in list(methods) if r % 2 == 0 else list(reversed(methods)):
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(inner):
                    methods[name](calls[name])
                    calls[name] += 1
                end.record()
                end.synchronize()
                samples[name].append(start.elapsed_time(end) / inner)
        return {name: statistics.median(s) for name, s in samples.items()}

    ms = event_ms(
        {
            "clone": lambda i: ws[i % c].clone(),
            "quantize int8": lambda i: ops.quantize(ws[i % c]),
            "quantize int4 g128": lambda i: ops.quantize(ws[i % c], bits=4, group_size=GROUP),
            "matvec int8": lambda i: ops.quantized_linear(x, *g8[i % c8]),
            "matvec int4 g128": lambda i: ops.quantized_linear(x, *g4[i % c4], bits=4),
        },
        inner=20,
    )
    bw = 2 * 4 * n * k / (ms["clone"] * 1e-3)
    moved = {
        "clone": 2 * 4 * n * k,
        "quantize int8": 4 * n * k + n * k + 4 * n,
        "quantize int4 g128": 4 * n * k + n * k // 2 + 4 * n * (k // GROUP),
        "matvec int8": n * k + 4 * n,  # weight bytes: codes and scales
        "matvec int4 g128": n * k // 2 + 4 * n * (k // GROUP),
    }
    for name, t in ms.items():
        gbs = moved[name] / (t * 1e-3)
        print(f"{name:<20} {t * 1e3:9.1f} us  {gbs / 1e9:7.1f} GB/s  {gbs / bw:6.1%} of clone")
    for name, target in (("matvec int8", 0.8), ("matvec int4 g128", 0.7)):
        frac = moved[name] / (ms[name] * 1e-3) / bw
        goals.append(ratio_goal(f"CUDA {name}: fraction of copy bandwidth", frac, ">=", target))
    return {"device": props.name, "shape": [n, k], "ms": ms, "bytes": moved}


# --- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small shapes, few rounds (< 20 s)")
    parser.add_argument(
        "--rounds", type=int, default=None, help="rounds per comparison (default 9; 3 with --quick)"
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="time torch.compile in --quick too (it compiles for 5-20 s)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads (greenai's kernels follow it); default: torch's choice",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n, k = (2048, 1024) if args.quick else (11008, 4096)
    rounds = args.rounds or (3 if args.quick else 9)

    cache_bytes = l3_bytes()
    print_machine(cache_bytes)
    gen = torch.Generator().manual_seed(0)
    ws = [torch.randn(n, k, generator=gen) for _ in range(copies_for(4 * n * k, cache_bytes))]
    goals: list[Goal] = []
    bench_quantize(ws, rounds=rounds, compile_=args.compile or not args.quick, goals=goals)
    bench_linear(ws, cache_bytes, rounds=rounds, inner=5, batches=(1, 8, 32), goals=goals)
    bench_cuda(n, k, rounds=rounds, goals=goals)
    print_goals(goals)
    print(f"load average after the run: {load_average()}")


if __name__ == "__main__":
    main()
