"""Sections 1, 4 and 5 of ``gpu_validation.py``: greenai's GPU tests, kernel benchmarks, and an
end-to-end inference stack.

Each section runs in a subprocess with a hard timeout, so a kernel that crashes or poisons its
CUDA context costs that section alone. Sections 4 and 5 run this file as their child::

    python benchmarks/gpu_validation_compute.py kernels --json PATH
    python benchmarks/gpu_validation_compute.py inference --json PATH --seconds 3
    python benchmarks/gpu_validation_compute.py inference --json PATH --device cpu --tiny

The child writes its JSON after each part, so a timeout keeps the parts that finished.
Nothing here imports torch or greenai at module level: the parent imports this file on
machines without either.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import re
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpu_validation_host import SectionSkipped, run_logged

if TYPE_CHECKING:
    from gpu_validation import Run, SectionRecord

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
NEEDS_CODECARBON = {
    "tests/test_gpu.py::test_counter_matches_nvidia_smi": (
        "greenai.track() without a location charges CodeCarbon's world average, read from "
        "CodeCarbon's offline data, and raises ModuleNotFoundError before metering without it; "
        "section 2 makes the same comparison through the tracking layer's Meter, which needs "
        "no CodeCarbon"
    ),
}
"""GPU tests that cannot run where codecarbon is not installed, and why (deselected there)."""
NEEDS_CODECARBON_TO_COLLECT = {
    "tests/sim/test_sim_nvml.py": (
        "imports codecarbon at module level (it checks CodeCarbon's NVML reader against "
        "greenai.sim), so collecting it fails without codecarbon; it has no GPU tests"
    ),
}
"""Test modules that cannot even be collected without codecarbon (ignored there): one
collection error would otherwise stop the whole pytest run before any test."""
INTENSITY_G_PER_KWH = 400.0
"""A fixed grid intensity for section 5's ``greenai.track`` (no CodeCarbon data needed)."""
STACK = {"layers": 16, "hidden": 2048, "intermediate": 8192, "kv": 512}
"""Section 5's stack: the Linear shapes of a ~1B LLM (Llama-3.2-1B-like: 16 layers, hidden
2048, GQA k/v 512, MLP 8192); ~0.7B Linear parameters."""
TINY_STACK = {"layers": 2, "hidden": 256, "intermediate": 512, "kv": 64}
"""The stack of the CPU rehearsal (``--device cpu --tiny``, run by the tests)."""


# --- section 1: pytest -m gpu ----------------------------------------------------------------


def section_tests(run: Run, rec: SectionRecord) -> None:
    """``pytest -m gpu tests`` (in ``--sim``, a rehearsal: every GPU test skips here)."""
    missing = importlib.util.find_spec("codecarbon") is None
    deselect = NEEDS_CODECARBON if missing else {}
    ignore = NEEDS_CODECARBON_TO_COLLECT if missing else {}
    rec.data["deselected"] = [{"test": t, "reason": r} for t, r in deselect.items()]
    rec.data["ignored"] = [{"module": m, "reason": r} for m, r in ignore.items()]
    xml = run.file("pytest.xml")
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "tests", "-p", "no:cacheprovider"]
    cmd += ["-q", "-rfEs", f"--junitxml={xml}", "--continue-on-collection-errors"]
    cmd += [f"--ignore={m}" for m in ignore]
    if importlib.util.find_spec("pytest_timeout"):
        cmd.append("--timeout=120")
    if importlib.util.find_spec("xdist"):
        cmd += ["-n", str(min(8, max(1, (os.cpu_count() or 2) // 2)))]
    cmd += [f"--deselect={t}" for t in deselect]
    done = run_logged(cmd, run.file("pytest.log"), timeout_s=rec.left_s() - 12, cwd=REPO)
    rec.data.update(done)
    rec.data["summary"] = parse_pytest_output(
        run.file("pytest.log").read_text(encoding="utf-8", errors="replace")
    )
    if xml.exists():
        rec.data["junit"] = parse_junit(xml)
    if done["timed_out"]:
        rec.timed_out(f"pytest ran past {done['limit_s']:.0f} s")
    junit = rec.data.get("junit") or {}
    counts = junit.get("counts") or rec.data["summary"]["counts"]
    bad = counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0)
    rec.goal("pytest -m gpu: failed + errors", float(bad) if counts else None, "<=", 0)
    rec.goal("pytest -m gpu: passed", float(counts.get("passed", 0)), ">=", 1)


def parse_pytest_output(text: str) -> dict[str, Any]:
    """Counts from pytest's last summary line, and the FAILED/ERROR lines of ``-rfE``."""
    counts: dict[str, int] = {}
    finals = re.findall(r"^=+ (.+ in [\d.]+s.*?) =+$", text, flags=re.M)
    if finals:
        for number, what in re.findall(r"(\d+) (\w+)", finals[-1]):
            counts[what] = int(number)
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)(?: - (.*))?$", text, flags=re.M)
    return {"counts": counts, "failed": [{"test": t, "message": m[:300]} for t, m in failed][:50]}


def parse_junit(path: Path) -> dict[str, Any]:
    """Outcome counts (overall and per test folder), failing tests and skip reasons."""
    counts: Counter[str] = Counter()
    by_folder: dict[str, Counter[str]] = {}
    failed: list[dict[str, str]] = []
    skips: Counter[str] = Counter()
    for case in ET.parse(path).getroot().iter("testcase"):
        parts = (case.get("classname") or "").split(".")
        split = next((i for i, p in enumerate(parts) if p.startswith("test_")), len(parts) - 1)
        test_id = (
            "/".join(parts[: split + 1])
            + ".py::"
            + "::".join([*parts[split + 1 :], case.get("name") or "?"])
        )
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
                message = (child.get("message") or child.text or "").strip()
                if outcome == "skipped":
                    skips[message[:200]] += 1
                else:
                    failed.append({"test": test_id, "outcome": outcome, "message": message[:300]})
                break
        counts[outcome] += 1
        by_folder.setdefault("/".join(parts[:split]) or ".", Counter())[outcome] += 1
    return {
        "counts": dict(counts),
        "by_folder": {k: dict(v) for k, v in sorted(by_folder.items())},
        "failed": failed[:50],
        "skip_reasons": dict(skips.most_common(10)),
    }


# --- section 4: kernel benchmarks -------------------------------------------------------------


def _child(run: Run, rec: SectionRecord, part: str, extra: Sequence[str] = ()) -> dict[str, Any]:
    """Run this file as ``part``'s child; its JSON (whatever it wrote) joins ``rec.data``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"{part}.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), part, "--json", str(out), *extra]
        done = run_logged(
            cmd, run.file("compute.log"), timeout_s=rec.left_s() - 10, cwd=REPO, append=True
        )
        rec.data.update(done)
        data: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    rec.data.update(data)
    if done["timed_out"]:
        rec.timed_out(f"{part} ran past {done['limit_s']:.0f} s")
    elif done["returncode"] != 0:
        raise RuntimeError(f"the {part} child exited with {done['returncode']}; see compute.log")
    return data


def _require_cuda_build() -> None:
    from greenai import _C

    if not _C.build_info()["cuda"]:
        raise SectionSkipped(
            "greenai._C was built without CUDA, so its CUDA kernels cannot run (see the build)"
        )


def section_kernels(run: Run, rec: SectionRecord) -> None:
    _require_cuda_build()
    data = _child(run, rec, "kernels")
    for name, value, op, target, note in kernel_goals(data):
        rec.goal(name, value, op, target, note)


def kernel_goals(data: dict[str, Any]) -> list[tuple[str, float | None, str, float, str]]:
    """The issue's goals from the benchmarks' returned timings (and three of this script's)."""
    goals: list[tuple[str, float | None, str, float, str]] = []
    q = data.get("quantize")
    if q:
        ms, moved = q["ms"], q["bytes"]
        copy_bw = moved["clone"] / (ms["clone"] * 1e-3)
        for name, target in (
            ("quantize int8", 0.8),
            ("quantize int4 g128", 0.8),
            ("matvec int8", 0.7),
            ("matvec int4 g128", 0.7),
        ):
            frac = moved[name] / (ms[name] * 1e-3) / copy_bw
            goals.append((f"CUDA {name}: bytes/s over copy bandwidth", frac, ">=", target, "issue"))
    s = data.get("sparse")
    if s:
        ms = s["ms"]
        ours = ms["greenai linear_2to4 fp16"]
        own = "this script's target: at least as fast"
        goals += [
            (
                "CUDA 2:4 matvec: torch semi-structured / greenai linear_2to4 (time)",
                ms["semi-structured matmul (x padded to 16)"] / ours,
                ">=",
                1.0,
                own,
            ),
            (
                "CUDA 2:4 matvec: dense fp16 / greenai linear_2to4 (time)",
                ms["dense fp16 matvec"] / ours,
                ">=",
                1.0,
                own,
            ),
            (
                "CUDA 2:4 compress: to_sparse_semi_structured / greenai compress_2to4 (time)",
                ms["to_sparse_semi_structured"] / ms["greenai compress_2to4"],
                ">=",
                1.0,
                own,
            ),
        ]
    return goals


def child_kernels(path: Path, rounds: int) -> None:
    """The CUDA sections of bench_quantize.py and bench_sparse.py, at their full shapes."""
    out: dict[str, Any] = {}
    n, k = 11008, 4096
    try:
        import bench_quantize

        goals: list[Any] = []
        out["quantize"] = bench_quantize.bench_cuda(n, k, rounds=rounds, goals=goals)
        out["quantize_bench_goals"] = [vars(g) for g in goals]
    except Exception:
        out["quantize_error"] = traceback.format_exc(limit=6)
    _write(path, out)
    try:
        import bench_sparse

        out["sparse"] = bench_sparse.bench_cuda(n, k, rounds=rounds)
    except Exception:
        out["sparse_error"] = traceback.format_exc(limit=6)
    _write(path, out)


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


# --- section 5: end-to-end inference --------------------------------------------------------


def section_inference(run: Run, rec: SectionRecord) -> None:
    _require_cuda_build()
    seconds = max(1.0, min(4.0, (rec.left_s() - 35) / 3))
    rec.data["seconds_per_variant"] = seconds
    data = _child(run, rec, "inference", ["--seconds", f"{seconds:.2f}"])
    fp16 = data.get("variants", {}).get("fp16", {})
    for name in ("int8", "int4"):
        v = data.get("variants", {}).get(name, {})
        if fp16.get("j_per_token") and v.get("j_per_token"):
            rec.goal(
                f"energy per token: fp16 / {name}",
                fp16["j_per_token"] / v["j_per_token"],
                ">=",
                1.0,
                "this script's target: quantized spends less",
            )


def make_stack(layers: int, hidden: int, intermediate: int, kv: int) -> Any:
    """Batch-1 decode projections: per layer q, k, v, o and an MLP (up, GELU, down), with
    LayerNorms and residuals; k and v stand in for the attention over a 1-token cache."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm1, self.norm2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
            self.q, self.o = nn.Linear(hidden, hidden, bias=False), nn.Linear(hidden, hidden)
            self.k, self.v = nn.Linear(hidden, kv, bias=False), nn.Linear(hidden, kv, bias=False)
            self.up, self.down = nn.Linear(hidden, intermediate), nn.Linear(intermediate, hidden)
            self.act = nn.GELU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.norm1(x)
            gate = torch.sigmoid(
                self.k(h).mean(-1, keepdim=True) + self.v(h).mean(-1, keepdim=True)
            )
            x = x + self.o(self.q(h) * gate)
            return x + self.down(self.act(self.up(self.norm2(x))))

    return nn.Sequential(*[Block() for _ in range(layers)])


def child_inference(
    path: Path, seconds: float, *, device: str, stack: dict[str, int], min_tokens: int = 20
) -> None:
    """Time and meter batch-1 decode through ``stack`` in fp16 (float32 on the CPU), greenai
    int8 and int4, each for about ``seconds`` and at least ``min_tokens`` tokens (the same
    number times the calibration). ``device="cpu"`` is the CPU rehearsal (tests): greenai
    meters the CPU."""
    import torch

    import greenai
    from greenai.compress import quantize

    cuda = device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    torch.manual_seed(0)
    out: dict[str, Any] = {"stack": stack, "device": device}
    out["intensity_g_per_kwh"] = INTENSITY_G_PER_KWH
    dtype = torch.float16 if cuda else torch.float32
    with torch.device(device):  # initialised where it runs: 0.7B parameters, fast on a GPU
        model = make_stack(**stack).to(dtype).eval()
    x = torch.randn(1, stack["hidden"], device=device, dtype=dtype)
    out["linear_params"] = sum(
        m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear)
    )
    models: dict[str, Any] = {"fp16" if cuda else "fp32": model}
    variants: dict[str, dict[str, Any]] = {name: {} for name in models}
    out["variants"] = variants
    for bits in (8, 4):
        note = None
        try:
            qmodel, report = quantize(model, bits=bits, sample_input=x)
        except Exception as e:  # a finding; the numbers still come from a float32 copy
            note = f"quantizing the {dtype} model failed ({type(e).__name__}: {e}); "
            note += "timed a quantized float32 copy, cast with .to(dtype)"
            qmodel, report = quantize(
                copy.deepcopy(model).float(), bits=bits, sample_input=x.float()
            )
            qmodel = qmodel.to(dtype)
        models[f"int{bits}"] = qmodel.eval()
        variants[f"int{bits}"] = {
            "quantize_note": note,
            "layers_quantized": len(report.layers),
            "layers_skipped": len(report.skipped),
            "bytes_before": report.bytes_before,
            "bytes_after": report.bytes_after,
            "max_relative_error": report.max_relative_error,
        }
    _write(path, out)
    with torch.no_grad():
        for name, m in models.items():
            for _ in range(min(5, min_tokens)):
                m(x)
            sync()
            t0 = time.perf_counter()
            for _ in range(min_tokens):
                m(x)
            sync()
            per_token = (time.perf_counter() - t0) / min_tokens
            variants[name]["tokens"] = max(min_tokens, round(seconds / per_token))
        with greenai.track(
            "gpu-validation-inference",
            gpus=[0] if cuda else [],
            cpu=not cuda,
            dram=False,
            intensity_g_per_kwh=INTENSITY_G_PER_KWH,
            history=False,
        ) as tracker:
            for name, m in models.items():
                with tracker.window(name):
                    t0 = time.perf_counter()
                    for _ in range(variants[name]["tokens"]):
                        m(x)
                    sync()
                    variants[name]["seconds"] = time.perf_counter() - t0
    result = tracker.result
    out["greenai"] = {"sources": dict(result.sources), "partial": result.partial}
    for name, v in variants.items():
        w = result.window(name)
        tokens = v["tokens"]
        v["ms_per_token"] = v["seconds"] / tokens * 1e3
        v["j_per_token"] = w.energy_j / tokens
        v["mean_power_w"] = w.mean_power_w
        v["co2_mg_per_token"] = None if w.co2_kg is None else w.co2_kg * 1e6 / tokens
    out["codecarbon_imported"] = "codecarbon" in sys.modules
    _write(path, out)


def child_main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="a child of gpu_validation.py (sections 4, 5)")
    parser.add_argument("part", choices=("kernels", "inference"))
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer stack (CPU rehearsal)")
    args = parser.parse_args(argv)
    if args.part == "kernels":
        child_kernels(args.json, args.rounds)
    else:
        stack, least = (TINY_STACK, 3) if args.tiny else (STACK, 20)
        child_inference(args.json, args.seconds, device=args.device, stack=stack, min_tokens=least)


if __name__ == "__main__":
    child_main()
