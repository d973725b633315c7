"""A small transformer-like stack at batch 1: fp32 against greenai int8 and int4 weights.

Four blocks of ``x + Linear(4d, d)(GELU(Linear(d, 4d)(x)))`` with d = 2048 (1024 with
``--quick``). The quantized variants hold every Linear's weight as ``greenai.ops.quantize``
returns it (int8 per output channel, int4 in groups of 128) and compute with
``greenai.ops.quantized_linear``; they are built with ``greenai.compress.quantize``, as a
user would build them.

For each variant it prints the median time per forward (variants interleaved across
rounds), the energy ``greenai.track()`` measures over a fixed number of forwards (median
of several tracked runs) with the sources it used, the ratios against fp32, and the
largest relative output error against fp32. Weights are cold: a variant cycles through
enough copies of its stack that together they exceed three times the last-level cache.
Nothing is asserted and nothing is written to disk (no reports, no run history).

Run: ``python benchmarks/bench_quantized_model.py`` (about a minute on 2 cores;
``--quick`` for a smoke run in under 20 s).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
from collections.abc import Callable, Sequence

import torch
from torch import nn

import greenai
import greenai.compress
from bench_common import MIB, cpu_model, l3_bytes, load_average, time_interleaved
from greenai import _C

BLOCKS = 4


# --- the model ------------------------------------------------------------------------------


class Block(nn.Module):
    """``x + fc2(gelu(fc1(x)))``: a transformer's MLP half, with its residual."""

    def __init__(self, fc1: nn.Module, fc2: nn.Module) -> None:
        super().__init__()
        self.fc1 = fc1
        self.fc2 = fc2
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(self.act(self.fc1(x)))


class Stack(nn.Module):
    def __init__(self, blocks: Sequence[Block]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


def fp32_stack(d: int, gen: torch.Generator) -> Stack:
    """Linears initialised as nn.Linear does, from ``gen`` so that runs repeat."""
    blocks = []
    for _ in range(BLOCKS):
        fc1, fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        for lin in (fc1, fc2):
            bound = 1 / math.sqrt(lin.in_features)
            with torch.no_grad():
                lin.weight.uniform_(-bound, bound, generator=gen)
                lin.bias.uniform_(-bound, bound, generator=gen)
        blocks.append(Block(fc1, fc2))
    return Stack(blocks).eval()


def quantized_stack(model: Stack, bits: int) -> Stack:
    """A copy of ``model`` with every Linear quantized as a user would: greenai.compress."""
    quantized, _ = greenai.compress.quantize(model, bits=bits)
    return quantized


def stack_bytes(model: nn.Module) -> int:
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


# --- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="d=1024, few rounds (< 20 s)")
    parser.add_argument("--d", type=int, default=None, help="model width (default 2048)")
    parser.add_argument("--forwards", type=int, default=None, help="forwards per tracked run")
    parser.add_argument("--rounds", type=int, default=None, help="timing and energy rounds")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads (greenai's kernels follow it); default: torch's choice",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    d = args.d or (1024 if args.quick else 2048)
    forwards = args.forwards or (30 if args.quick else 50)
    rounds = args.rounds or (3 if args.quick else 5)

    cache = l3_bytes()
    print(
        f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs, last-level cache "
        f"{cache / MIB:.0f} MiB; torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"greenai {greenai.__version__}, cpu_isa={_C.cpu_isa()}"
    )
    print(f"load average before the run: {load_average()} (other processes skew the timings)")

    gen = torch.Generator().manual_seed(0)
    base = fp32_stack(d, gen)
    fp32_bytes = stack_bytes(base)
    copies = max(1, math.ceil(3 * cache / fp32_bytes))
    variants: dict[str, list[Stack]] = {
        "fp32": [base]
        + [fp32_stack(d, torch.Generator().manual_seed(0)) for _ in range(copies - 1)]
    }
    for bits in (8, 4):
        first = quantized_stack(base, bits)
        copies = max(1, math.ceil(3 * cache / stack_bytes(first)))
        variants[f"int{bits}"] = [first] + [quantized_stack(base, bits) for _ in range(copies - 1)]
    print(f"model: {BLOCKS} blocks of Linear({d}, {4 * d}) -> GELU -> Linear({4 * d}, {d}) + x")
    for name, stacks in variants.items():
        nbytes = stack_bytes(stacks[0])
        print(
            f"  {name:<5} weights {nbytes / MIB:7.1f} MiB, {len(stacks)} copies "
            f"({len(stacks) * nbytes / MIB:.0f} MiB cycled)"
        )

    x = torch.randn(1, d, generator=gen)
    xs = torch.randn(8, 1, d, generator=gen)
    with torch.inference_mode():
        ref = [base(xi) for xi in xs]
        errors = {
            name: max(
                float((stacks[0](xi) - r).norm() / r.norm()) for xi, r in zip(xs, ref, strict=True)
            )
            for name, stacks in variants.items()
        }

        def forward(stacks: list[Stack]) -> Callable[[int], object]:
            return lambda i: stacks[i % len(stacks)](x)

        ms = time_interleaved(
            {name: forward(stacks) for name, stacks in variants.items()},
            rounds=rounds,
            inner=max(1, forwards // 10),
        )

        # Energy: `forwards` forwards per tracked run, variants interleaved over the rounds.
        # country is given so that greenai does not warn about an unknown location (the CO2
        # figure is not used here); history=False and no output_dir: nothing is written.
        energy: dict[str, list[float]] = {name: [] for name in variants}
        last: dict[str, greenai.Result] = {}
        for r in range(rounds):
            for name in list(variants) if r % 2 == 0 else list(reversed(variants)):
                stacks = variants[name]
                with greenai.track(
                    f"{name} x{forwards}", country="USA", history=False, synchronize=False
                ) as run:
                    for i in range(forwards):
                        stacks[i % len(stacks)](x)
                energy[name].append(run.result.energy_j)
                last[name] = run.result

    print(f"\nbatch 1, {forwards} forwards per tracked run, medians of {rounds} rounds")
    print(
        f"{'variant':<7} {'ms/fwd':>8} {'speedup':>8} {'J/run':>9} {'J/fwd':>9} "
        f"{'energy':>7} {'max rel err':>12}  sources"
    )
    e_fp32 = statistics.median(energy["fp32"])
    for name in variants:
        e = statistics.median(energy[name])
        result = last[name]
        sources = ", ".join(f"{dev}={src}" for dev, src in result.sources.items())
        if result.partial:
            sources += f"  [PARTIAL: {'; '.join(result.partial_reasons)}]"
        print(
            f"{name:<7} {ms[name]:8.2f} {ms['fp32'] / ms[name]:7.2f}x {e:9.3f} "
            f"{e / forwards:9.4f} {e_fp32 / e:6.2f}x {errors[name]:12.2e}  {sources}"
        )
    print(
        "speedup and energy are fp32's time and energy over the variant's; the errors are the "
        "largest ||y - y_fp32|| / ||y_fp32|| over 8 inputs"
    )
    print(f"load average after the run: {load_average()}")
    if all(src == "estimate" for r in last.values() for src in r.sources.values()):
        print(
            "every source is an estimate: greenai models CPU power from this process's CPU "
            "time and DRAM power from its resident memory, so the energy ratios follow CPU "
            "time, not a sensor"
        )


if __name__ == "__main__":
    main()
