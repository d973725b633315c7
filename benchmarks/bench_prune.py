"""Channel pruning on CPU: does the MACs reduction show up as time and energy saved?

Two models, each pruned by ``greenai.compress.prune_channels`` and by Torch-Pruning
(``MetaPruner`` with ``MagnitudeImportance(p=2)``, the final layer ignored) at 30 % and 50 %:

- a ResNet-18-like CNN (BasicBlocks 64-128-256-512, BatchNorm, residual downsampling) on
  1x3x160x160 (1x3x96x96 with ``--quick``);
- a transformer block (``x + MHA(LN(x))``, ``x + FFN(LN(x))``, d=512, 8 heads, FFN 2048) on
  one sequence of 128 tokens (64 with ``--quick``). Its residual stream reaches the output
  through LayerNorm, so greenai prunes heads and the FFN's hidden units only.

Each model (the dense original and every pruned one) is timed in up to three forms, and
every form of a pruned model is compared with the SAME form of the dense original:

- ``eager``: the model as the pruner returns it, in eval mode: BatchNorm a separate module
  (one more pass over every activation), contiguous (NCHW) memory format;
- ``BN-folded``: ``torch.fx.experimental.optimization.fuse`` folds each BatchNorm into the
  conv before it (how the model would be deployed for inference), NCHW;
- ``BN-folded+CL``: BN-folded, weights and input in ``torch.channels_last`` (NHWC).

The transformer block has no BatchNorm and no 4-D activations, so it has the ``eager`` form
only. All forms of all variants of one model are timed in one interleaved session.

For each variant and form it prints the MACs ratio (before / after, counted by
Torch-Pruning's counter on the eager model for every form, so the two pruners and the forms
are compared alike; folding adds a bias, which the count leaves out), the measured latency
ratio to the same form of the dense model (median per forward over ``--rounds`` rounds of
several forwards each, all variants and forms interleaved with the order reversed every
other round, same process, two warm-up forwards each, under ``torch.inference_mode``), their
quotient (goal >= 0.8: the speedup is at least 0.8 of the MACs ratio), the speedup over the
eager dense model (what deployment plus pruning gains together), the energy per inference
``greenai.track`` measures (ratio to the same form of the dense model), whether the output
shapes are unchanged, the largest absolute difference of a deployed form's output from the
eager form's, and the time each pruner took (after one untimed warm-up call). The torch
thread count (``--threads``; torch's default otherwise) is printed with every table: on a
2-core machine 1 and 2 threads give different ratios. Nothing is asserted or written to disk.

Run: ``python benchmarks/bench_prune.py`` (a few minutes on 2 cores; ``--quick`` for a
smoke run).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn
from torch.fx.experimental.optimization import fuse

import greenai
import greenai.compress
from bench_common import cpu_model, load_average, time_interleaved

AMOUNTS = (0.3, 0.5)


# --- models -----------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + identity)


class ResNet18(nn.Module):
    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.pool = nn.MaxPool2d(3, 2, 1)
        blocks: list[nn.Module] = []
        c_in = 64
        for c_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out, 1)]
            c_in = c_out
        self.layers = nn.Sequential(*blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.bn1(self.conv1(x))))
        x = self.avgpool(self.layers(x))
        return self.fc(torch.flatten(x, 1))


class TransformerBlock(nn.Module):
    def __init__(self, d: int = 512, heads: int = 8, hidden: int = 2048) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, hidden)
        self.fc2 = nn.Linear(hidden, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.fc2(nn.functional.gelu(self.fc1(self.ln2(x))))


# --- pruners ----------------------------------------------------------------------------------


def prune_greenai(model: nn.Module, x: torch.Tensor, amount: float) -> nn.Module:
    pruned, _ = greenai.compress.prune_channels(model, amount, example_inputs=x)
    return pruned


def prune_torch_pruning(model: nn.Module, x: torch.Tensor, amount: float) -> nn.Module:
    model = copy.deepcopy(model)
    ignored = [m for m in (getattr(model, "fc", None),) if m is not None]
    heads = {m: m.num_heads for m in model.modules() if isinstance(m, nn.MultiheadAttention)}
    if isinstance(model, TransformerBlock):
        ignored = []  # the block's output is its residual stream; TP prunes it anyway
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TP warns about unwrapped parameters of MHA
        pruner = tp.pruner.MetaPruner(
            model,
            x,
            importance=tp.importance.MagnitudeImportance(p=2),
            pruning_ratio=amount,
            ignored_layers=ignored,
            num_heads=heads,
            prune_num_heads=bool(heads),
            prune_head_dims=False,
            head_pruning_ratio=amount,
        )
        pruner.step()
    return model


PRUNERS: dict[str, Callable[[nn.Module, torch.Tensor, float], nn.Module]] = {
    "greenai": prune_greenai,
    "torch-pruning": prune_torch_pruning,
}


# --- measuring --------------------------------------------------------------------------------


@dataclass
class Row:
    model: str
    form: str
    variant: str
    amount: float
    macs: float
    ms: float = 0.0
    joules: float = 0.0
    prune_s: float = 0.0
    same_shape: bool = True
    max_diff: float = 0.0


@dataclass(frozen=True)
class Form:
    """How a model is prepared for timing: ``model_fn`` on the eval model, ``input_fn`` on x."""

    model_fn: Callable[[nn.Module], nn.Module]
    input_fn: Callable[[torch.Tensor], torch.Tensor]


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


def _channels_last(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last)


EAGER = {"eager": Form(lambda m: m, _same)}
CNN_FORMS = {
    **EAGER,
    "BN-folded": Form(fuse, _same),
    "BN-folded+CL": Form(lambda m: fuse(m).to(memory_format=torch.channels_last), _channels_last),
}


def macs_of(model: nn.Module, x: torch.Tensor) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        macs, _ = tp.utils.count_ops_and_params(model, x)
    return float(macs)


def energy_per_forward(
    variants: dict[str, tuple[nn.Module, torch.Tensor]], forwards: int, rounds: int
) -> dict[str, float]:
    """Median joules per forward over ``rounds`` tracked runs of ``forwards`` forwards each,
    variants interleaved (order reversed every other round)."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            model, x = variants[name]
            with greenai.track(
                f"{name} x{forwards}", country="USA", history=False, synchronize=False
            ) as run:
                for _ in range(forwards):
                    model(x)
            samples[name].append(run.result.energy_j / forwards)
    return {name: statistics.median(s) for name, s in samples.items()}


def bench_model(
    label: str,
    model: nn.Module,
    x: torch.Tensor,
    rounds: int,
    inner: int,
    forwards: int,
    forms: dict[str, Form],
) -> list[list[Row]]:
    """One list of rows per form, each starting with the dense original in that form."""
    model.eval()
    with torch.inference_mode():
        ref = model(x)
    base_rows = [Row(label, "eager", "original", 0.0, macs_of(model, x))]
    models: dict[str, nn.Module] = {"original": model}
    for fn in PRUNERS.values():  # first calls pay for imports and caches: not timed
        fn(model, x, AMOUNTS[0])
    for amount in AMOUNTS:
        for pruner, fn in PRUNERS.items():
            t0 = time.perf_counter()
            pruned = fn(model, x, amount).eval()
            prune_s = time.perf_counter() - t0
            with torch.inference_mode():
                same = pruned(x).shape == ref.shape
            name = f"{pruner} {amount:.0%}"
            models[name] = pruned
            base_rows.append(
                Row(
                    label,
                    "eager",
                    name,
                    amount,
                    macs_of(pruned, x),
                    prune_s=prune_s,
                    same_shape=same,
                )
            )
    # every form of every model, timed together; a deployed form's output is compared with
    # the eager form's of the same model
    calls: dict[str, Callable[[int], object]] = {}
    deployed: dict[str, tuple[nn.Module, torch.Tensor]] = {}
    table: list[list[Row]] = []
    for form_name, form in forms.items():
        rows = []
        for row in base_rows:
            m, xi = form.model_fn(copy.deepcopy(models[row.variant])).eval(), form.input_fn(x)
            with torch.inference_mode():
                eager_out, out = models[row.variant](x), m(xi)
            rows.append(
                Row(
                    label,
                    form_name,
                    row.variant,
                    row.amount,
                    row.macs,
                    prune_s=row.prune_s,
                    same_shape=out.shape == ref.shape,
                    max_diff=float((out - eager_out).abs().max()),
                )
            )
            key = f"{form_name} {row.variant}"
            deployed[key] = (m, xi)
            calls[key] = lambda i, m=m, xi=xi: m(xi)
        table.append(rows)
    with torch.inference_mode():
        ms = time_interleaved(calls, rounds=rounds, inner=inner, warmup=2)
        joules = energy_per_forward(deployed, forwards, max(3, rounds // 4))
    for rows in table:
        for row in rows:
            key = f"{row.form} {row.variant}"
            row.ms, row.joules = ms[key], joules[key]
    return table


def print_rows(rows: list[Row], eager_ms: float) -> None:
    """``rows[0]`` is the dense original in this form; ``eager_ms`` the dense eager model's."""
    base = rows[0]
    print(
        f"\n{base.model} -- form {base.form}, {torch.get_num_threads()} threads: "
        f"dense {base.macs / 1e6:,.1f} MMACs, {base.ms:.2f} ms/forward, "
        f"{base.joules * 1e3:.2f} mJ/forward"
    )
    print(
        f"{'variant':<19} {'MMACs':>9} {'MACs x':>7} {'ms':>8} {'speed x':>8} "
        f"{'speed/MACs':>10} {'vs eager':>8} {'mJ':>8} {'energy x':>9} {'shape':>6} "
        f"{'max|diff|':>9} {'prune s':>8}"
    )
    for r in rows:
        macs_x = base.macs / r.macs
        speed_x = base.ms / r.ms
        print(
            f"{r.variant:<19} {r.macs / 1e6:9.1f} {macs_x:7.2f} {r.ms:8.2f} {speed_x:8.2f} "
            f"{speed_x / macs_x:10.2f} {eager_ms / r.ms:8.2f} {r.joules * 1e3:8.2f} "
            f"{base.joules / r.joules:9.2f} {'same' if r.same_shape else 'DIFF':>6} "
            f"{r.max_diff:9.1e} {r.prune_s:8.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller inputs, fewer rounds")
    parser.add_argument("--rounds", type=int, default=None, help="timing rounds (default 20)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads; default torch's"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds = args.rounds or (6 if args.quick else 20)
    size, tokens = (96, 64) if args.quick else (160, 128)
    print(
        f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; torch-pruning {tp.__version__}; "
        f"greenai {greenai.__version__}"
    )
    print(f"load average before the run: {load_average()} (other processes skew the timings)")
    torch.manual_seed(0)
    all_rows = [
        bench_model(
            f"ResNet-18-like, 1x3x{size}x{size}",
            ResNet18(),
            torch.randn(1, 3, size, size),
            rounds,
            inner=3,
            forwards=10 if args.quick else 30,
            forms=CNN_FORMS,
        ),
        bench_model(
            f"transformer block d=512, 1x{tokens} tokens",
            TransformerBlock(),
            torch.randn(1, tokens, 512),
            rounds,
            inner=5,
            forwards=20 if args.quick else 60,
            forms=EAGER,
        ),
    ]
    for table in all_rows:
        for rows in table:
            print_rows(rows, eager_ms=table[0][0].ms)
    print(
        "\nForms: eager = as pruned, eval, BatchNorm unfused, NCHW; BN-folded = "
        "torch.fx.experimental.optimization.fuse (BatchNorm folded into the conv), NCHW; "
        "BN-folded+CL = BN-folded in channels_last (NHWC), input too.\n"
        "MACs x, speed x and energy x are the dense original's over the variant's, both in the "
        "SAME form; speed/MACs is their quotient (goal >= 0.8); vs eager = the dense eager "
        "model's ms over this row's. MACs by torch_pruning.utils.count_ops_and_params on the "
        "eager model for every form. max|diff| = largest |output - eager output|."
    )
    print(f"load average after the run: {load_average()}")


if __name__ == "__main__":
    main()
