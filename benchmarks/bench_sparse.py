"""greenai's 2:4 sparsity kernels against NumPy, torch and the memory-bandwidth bound.

1. The 2:4 mask of an 11008x4096 float32 weight (new output each call, as a user calls it):
   greenai vs the NumPy and torch masks a user writes (a stable argsort in NumPy, which
   keeps ties on the lower index like greenai; ``torch.topk`` in torch, the fastest torch
   formulation found), and the bound set by the copy bandwidth measured in this process
   (read 4 bytes, write 1 per element). Goal: greenai / bound <= 2. Also ``compress_2to4``
   (read 4, write 2.125 bytes per element) against the same bound.
2. Batch-1 matrix-vector product with that weight: fp32 ``nn.Linear`` on the dense weight vs
   greenai ``linear_2to4`` on the compressed one (56 % of the bytes). Goal: fp32 / greenai
   > 1. Also bfloat16 (values and x in bfloat16) against ``nn.Linear`` in bfloat16.
3. Batches of 8, 16 and 32 (16 and 32 go through the tiled path: decompress a tile, torch
   matmul; ``greenai.ops._native_sparse.LARGE_BATCH`` is the switch; bfloat16 on the
   ``avx512_bf16`` sparse table runs its direct kernel up to ``LARGE_BATCH_BF16`` rows).
4. On CUDA (when torch and greenai._C both have it): mask, compress and the batch-1 product
   against ``torch.sparse.to_sparse_semi_structured`` and its matmul (float16), and dense
   float16.

Weights are cold (each method cycles through copies that together exceed three times the
last-level cache); methods are interleaved across rounds and each figure is the median of
the rounds. Ratios are printed, never asserted.

Run: ``python benchmarks/bench_sparse.py`` (about a minute on 2 cores; ``--quick`` for a
smoke run on small shapes; ``--isa avx2`` for the AVX2 kernels on an AVX-512 CPU).
"""

from __future__ import annotations

import argparse
import statistics
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


def numpy_mask(w: np.ndarray) -> np.ndarray:
    """The 2:4 mask as a NumPy user writes it: a stable argsort of -|w| per group of 4."""
    groups = np.abs(w).reshape(-1, 4)
    top = np.argsort(-groups, axis=1, kind="stable")[:, :2]
    mask = np.zeros(groups.shape, dtype=bool)
    np.put_along_axis(mask, top, True, axis=1)
    return mask.reshape(w.shape)


def torch_mask(w: torch.Tensor) -> torch.Tensor:
    """The fastest torch formulation found: topk of |w| per group, scattered into a mask."""
    groups = w.abs().reshape(-1, 4)
    top = torch.topk(groups, 2, dim=1).indices
    return torch.zeros_like(groups, dtype=torch.bool).scatter_(1, top, True).reshape(w.shape)


def bench_mask(ws: Sequence[torch.Tensor], *, rounds: int, goals: list[Goal]) -> None:
    n, k = ws[0].shape
    c = len(ws)
    print(
        f"\n== 1. 2:4 mask {n}x{k} float32, cycling {c} copies ({c * 4 * n * k / MIB:.0f} MiB) =="
    )
    bw_np, bw_torch = copy_bandwidth(ws, rounds)
    bandwidth = max(bw_np, bw_torch)
    print(
        f"copy bandwidth (read+write): numpy copyto {bw_np / 1e9:.1f} GB/s, "
        f"torch copy_ {bw_torch / 1e9:.1f} GB/s; bound uses {bandwidth / 1e9:.1f} GB/s"
    )
    ws_np = [w.numpy() for w in ws]
    ms = time_interleaved(
        {
            "greenai mask_2to4": lambda i: ops.mask_2to4(ws[i % c]),
            "greenai compress_2to4": lambda i: ops.compress_2to4(ws[i % c]),
            "numpy argsort mask": lambda i: numpy_mask(ws_np[i % c]),
            "torch topk mask": lambda i: torch_mask(ws[i % c]),
        },
        rounds=rounds,
    )
    mask_bound = 5 * n * k / bandwidth * 1e3
    compress_bound = (4 + 2 + 0.125) * n * k / bandwidth * 1e3
    print(f"{'bandwidth bound, mask':<26} {mask_bound:9.2f} ms")
    print(f"{'bandwidth bound, compress':<26} {compress_bound:9.2f} ms")
    base = ms["greenai mask_2to4"]
    for name, t in ms.items():
        print(f"{name:<26} {t:9.2f} ms   {t / base:7.1f}x greenai mask")
    over = base / mask_bound
    print(f"greenai mask / bound: {over:.2f}  (goal <= 2)")
    print(f"greenai compress / bound: {ms['greenai compress_2to4'] / compress_bound:.2f}")
    print(
        f"numpy / greenai mask: {ms['numpy argsort mask'] / base:.0f}; "
        f"torch / greenai mask: {ms['torch topk mask'] / base:.0f}"
    )
    goals.append(ratio_goal("mask 2:4: greenai / bandwidth bound", over, "<=", 2))


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
    c24 = copies_for(n * k * 2 + n * k // 8, cache_bytes)
    c16 = copies_for(2 * n * k, cache_bytes)
    print(
        f"\n== 2. linear {n}x{k}: copies fp32 {len(ws)}, 2:4 fp32 {c24}, bf16 dense {c16}, "
        f"2:4 bf16 {copies_for(n * k + n * k // 8, cache_bytes)} =="
    )
    fp32 = []
    for w in ws:
        lin = nn.Linear(k, n, bias=False)
        lin.weight = nn.Parameter(w, requires_grad=False)
        fp32.append(lin)
    s32 = [ops.compress_2to4(ws[i % len(ws)]) for i in range(c24)]
    bf16 = [
        nn.Linear(k, n, bias=False).to(torch.bfloat16).requires_grad_(False) for _ in range(c16)
    ]
    c24b = copies_for(n * k + n * k // 8, cache_bytes)
    s16 = [ops.compress_2to4(ws[i % len(ws)].to(torch.bfloat16)) for i in range(c24b)]

    # accuracy: the 2:4 product against fp32 on the pruned (decompressed) weight
    x = torch.randn(4, k, generator=gen)
    dense = ops.decompress_2to4(*s32[0])
    err = float((ops.linear_2to4(x, *s32[0]) - x @ dense.T).norm() / (x @ dense.T).norm())
    print(f"linear_2to4 float32 vs fp32 matmul of the pruned weight: relative error {err:.2e}")

    def methods_for(x: torch.Tensor) -> dict[str, Callable[[int], object]]:
        xb = x.to(torch.bfloat16)
        return {
            "fp32 nn.Linear (dense)": lambda i: fp32[i % len(fp32)](x),
            "greenai linear_2to4 fp32": lambda i: ops.linear_2to4(x, *s32[i % c24]),
            "bf16 nn.Linear (dense)": lambda i: bf16[i % c16](xb),
            "greenai linear_2to4 bf16": lambda i: ops.linear_2to4(xb, *s16[i % c24b]),
        }

    for batch in batches:
        x = torch.randn(batch, k, generator=gen)
        with torch.no_grad():
            ms = time_interleaved(methods_for(x), rounds=rounds, inner=inner if batch == 1 else 1)
        print(f"-- batch {batch} --")
        base = ms["fp32 nn.Linear (dense)"]
        weight_bytes = {
            "fp32 nn.Linear (dense)": 4 * n * k,
            "greenai linear_2to4 fp32": 2 * n * k + n * k // 8,
            "bf16 nn.Linear (dense)": 2 * n * k,
            "greenai linear_2to4 bf16": n * k + n * k // 8,
        }
        for name, t in ms.items():
            gbs = weight_bytes[name] / (t * 1e-3) / 1e9
            print(
                f"{name:<26} {t:8.3f} ms   fp32 / this {base / t:5.2f}   {gbs:6.1f} GB/s of weights"
            )
        r = base / ms["greenai linear_2to4 fp32"]
        rb = ms["bf16 nn.Linear (dense)"] / ms["greenai linear_2to4 bf16"]
        print(f"fp32 dense / greenai 2:4 fp32: {r:.2f}" + ("  (goal > 1)" if batch == 1 else ""))
        print(f"bf16 dense / greenai 2:4 bf16: {rb:.2f}")
        if batch == 1:
            goals.append(ratio_goal("matvec: fp32 dense / greenai 2:4 fp32", r, ">=", 1.0))


def bench_cuda(n: int, k: int, *, rounds: int) -> dict[str, object] | None:
    """Section 4; returns what it printed, machine-readable (None when skipped): the device,
    the shape and the median ms of each method, for ``benchmarks/gpu_validation.py``."""
    if not torch.cuda.is_available():
        print("\n== 4. CUDA: skipped (torch.cuda.is_available() is False) ==")
        return None
    if not _C.build_info()["cuda"]:
        print("\n== 4. CUDA: skipped (greenai._C was built without CUDA) ==")
        return None
    from torch.sparse import to_sparse_semi_structured

    dev = torch.device("cuda")
    props = torch.cuda.get_device_properties(dev)
    l2 = int(getattr(props, "L2_cache_size", 50 * MIB))
    c = copies_for(2 * n * k, l2)
    print(f"\n== 4. CUDA: {props.name}; {n}x{k} float16, {c} copies ==")
    gen = torch.Generator(device=dev).manual_seed(0)
    ws = [torch.randn(n, k, device=dev, generator=gen, dtype=torch.float16) for _ in range(c)]
    pruned = [w * ops.mask_2to4(w) for w in ws]
    ours = [ops.compress_2to4(w) for w in ws]
    theirs = [to_sparse_semi_structured(p) for p in pruned]
    x = torch.randn(1, k, device=dev, dtype=torch.float16, generator=gen)
    # the semi-structured matmul wants at least 8 (cuSPARSELt) or 16 (CUTLASS) rows: pad x
    x16 = torch.zeros(16, k, device=dev, dtype=torch.float16)
    x16[:1] = x

    def event_ms(methods: dict[str, Callable[[int], object]], inner: int) -> dict[str, float]:
        samples: dict[str, list[float]] = {name: [] for name in methods}
        for fn in methods.values():
            fn(0)
        torch.cuda.synchronize()
        calls = 0
        for r in range(rounds):
            for name in list(methods) if r % 2 == 0 else list(reversed(methods)):
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(inner):
                    methods[name](calls)
                    calls += 1
                end.record()
                end.synchronize()
                samples[name].append(start.elapsed_time(end) / inner)
        return {name: statistics.median(s) for name, s in samples.items()}

    ms = event_ms(
        {
            "clone": lambda i: ws[i % c].clone(),
            "greenai mask_2to4": lambda i: ops.mask_2to4(ws[i % c]),
            "greenai compress_2to4": lambda i: ops.compress_2to4(ws[i % c]),
            "to_sparse_semi_structured": lambda i: to_sparse_semi_structured(pruned[i % c]),
            "dense fp16 matvec": lambda i: x @ ws[i % c].T,
            "greenai linear_2to4 fp16": lambda i: ops.linear_2to4(x, *ours[i % c]),
            "semi-structured matmul (x padded to 16)": lambda i: torch.mm(theirs[i % c], x16.T),
        },
        inner=20,
    )
    for name, t in ms.items():
        print(f"{name:<40} {t * 1e3:9.1f} us")
    return {"device": props.name, "shape": [n, k], "ms": ms}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small shapes, few rounds")
    parser.add_argument(
        "--rounds", type=int, default=None, help="rounds per comparison (default 7; 3 with --quick)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads (greenai's kernels follow it); default: torch's choice",
    )
    parser.add_argument(
        "--isa",
        choices=_C.cpu_isas(),
        default=None,
        help="greenai's CPU kernels to run (default: the best this CPU supports)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.isa:
        _C.set_cpu_isa(args.isa)
    print(f"greenai CPU kernels: {_C.cpu_isa()} (sparsity table: {_C.sparse_cpu_isa()})")
    n, k = (2048, 1024) if args.quick else (11008, 4096)
    rounds = args.rounds or (3 if args.quick else 7)
    cache_bytes = l3_bytes()
    print_machine(cache_bytes)
    gen = torch.Generator().manual_seed(0)
    ws = [torch.randn(n, k, generator=gen) for _ in range(copies_for(4 * n * k, cache_bytes))]
    goals: list[Goal] = []
    bench_mask(ws, rounds=rounds, goals=goals)
    bench_linear(ws, cache_bytes, rounds=rounds, inner=5, batches=(1, 8, 16, 32), goals=goals)
    bench_cuda(n, k, rounds=rounds)
    print_goals(goals)
    print(f"load average after the run: {load_average()}")


if __name__ == "__main__":
    main()
