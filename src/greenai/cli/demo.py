"""``greenai demo``: a small training run under :func:`greenai.track`, to see what it reports."""

from __future__ import annotations

import os
import time
from typing import Any

from greenai.tracker import Tracker
from greenai.tracking.result import Result


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
    """
    import torch

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
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
