"""``greenai demo``: a small training run under :func:`greenai.track`, to see what it reports."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from greenai.tracker import Tracker
from greenai.tracking.result import Result

if TYPE_CHECKING:
    import torch


def run_demo(
    *,
    seconds: float = 20.0,
    device: str | None = None,
    epochs: int = 4,
    output_dir: str | os.PathLike[str] | None = None,
    **accounting: Any,
) -> Result:
    """Train an MLP on synthetic regression data for about ``seconds``, in ``epochs`` windows.

    ``accounting`` holds :class:`greenai.Tracker`'s location and price settings.

    Raises:
        ValueError: ``device`` is not a CPU or CUDA device this machine has.
    """
    import torch

    try:
        dev = torch_device(device)
    except ValueError as e:
        raise ValueError(f"device {device!r}: {e}") from e
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8192, 256, generator=gen)
    y = (x @ torch.randn(256, 1, generator=gen)).tanh() + 0.05 * torch.randn(8192, 1, generator=gen)
    x, y = x.to(dev), y.to(dev)
    model = torch.nn.Sequential(
        torch.nn.Linear(256, 512),
        torch.nn.ReLU(),
        torch.nn.Linear(512, 512),
        torch.nn.ReLU(),
        torch.nn.Linear(512, 1),
    ).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gpus = [dev.index or 0] if dev.type == "cuda" else []
    batch = 256
    with Tracker("demo", gpus=gpus, output_dir=output_dir, **accounting) as run:
        for epoch in range(epochs):
            with run.window(f"epoch {epoch}"):
                deadline = time.monotonic() + seconds / epochs
                step = 0
                while time.monotonic() < deadline:
                    i = (step * batch) % len(x)
                    with run.step():
                        loss = torch.nn.functional.mse_loss(
                            model(x[i : i + batch]), y[i : i + batch]
                        )
                        opt.zero_grad(set_to_none=True)
                        loss.backward()  # type: ignore[no-untyped-call]
                        opt.step()
                        if dev.type == "cuda":
                            torch.cuda.synchronize(dev)  # so a step's time is its real time
                    step += 1
    return run.result


def torch_device(name: str | None) -> torch.device:
    """The device to train on: ``name``, or CUDA when available, else the CPU.

    Checked before training, as torch's own failure for a missing CUDA is an
    ``AssertionError`` from deep inside the first copy to the GPU.

    Raises:
        ValueError: ``name`` is not a torch device, not a CPU or CUDA one, or a CUDA
            device this machine does not have; the message says why, without the name.
    """
    import torch

    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError("not a torch device; give cpu, cuda or cuda:N") from None
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise ValueError(f"the demo trains on cpu or cuda, not {dev.type}")
    if not torch.cuda.is_available():
        built = torch.version.cuda or "no CUDA"
        raise ValueError(
            f"CUDA is not available here (torch {torch.__version__}, built with {built}); "
            "train on cpu instead"
        )
    count = torch.cuda.device_count()
    if dev.index is not None and dev.index >= count:
        raise ValueError(f"this machine has {count} CUDA device(s): cuda:0 to cuda:{count - 1}")
    return dev
