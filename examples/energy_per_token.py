"""Energy, CO2e and cost per generated token and per request, for a small causal language model.

A tiny decoder-only transformer (built in code, random weights: no download) answers
requests by greedy decoding, one ``run.step(samples=1)`` per request; each request counts
the tokens it made with ``step.count(tokens=...)`` once they are known. On a machine
without a GPU the work runs on a simulated GPU (``greenai.sim``, virtual clock): each
forward pass costs the simulated GPU time in proportion to the tokens it processes.

Run: ``python examples/energy_per_token.py [--requests 8] [--max-new-tokens 24]``.
"""

from __future__ import annotations

import argparse
import contextlib
import random

import torch
from torch import nn

import greenai

VOCAB, WIDTH, HEADS, LAYERS, CONTEXT = 256, 64, 4, 2, 128
GPU_S_PER_TOKEN = 2e-4  # the simulated GPU's time per token of a forward pass


class TinyCausalLM(nn.Module):
    """Embedding, causal self-attention blocks, and a head over the vocabulary."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.position = nn.Embedding(CONTEXT, WIDTH)
        layer = nn.TransformerEncoderLayer(WIDTH, HEADS, 4 * WIDTH, batch_first=True)
        self.blocks = nn.TransformerEncoder(layer, LAYERS)
        self.head = nn.Linear(WIDTH, VOCAB)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        n = tokens.shape[1]
        x = self.embed(tokens) + self.position(torch.arange(n))
        mask = nn.Transformer.generate_square_subsequent_mask(n)
        return self.head(self.blocks(x, mask=mask, is_causal=True))


@torch.no_grad()
def generate(model: TinyCausalLM, prompt: list[int], max_new: int, gpu: object) -> list[int]:
    """Greedy decoding; stops at token 0 (end) or after ``max_new`` tokens."""
    tokens = torch.tensor([prompt])
    made: list[int] = []
    for _ in range(max_new):
        logits = model(tokens[:, -CONTEXT:])
        if gpu is not None:
            gpu.compute(GPU_S_PER_TOKEN * tokens.shape[1])  # type: ignore[attr-defined]
        token = int(logits[0, -1].argmax())
        made.append(token)
        if token == 0:
            break
        tokens = torch.cat([tokens, torch.tensor([[token]])], dim=1)
    return made


def main(argv: list[str] | None = None) -> greenai.Result:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    rng = random.Random(0)
    model = TinyCausalLM().eval()
    simulated = not greenai.devices.probe_gpus()
    context = (
        greenai.sim.simulated_nvml([greenai.sim.SimulatedGPU()], virtual_clock=True)
        if simulated
        else contextlib.nullcontext()
    )
    with context as gpu:
        with greenai.track("generate", country="FRA", price_per_kwh=0.2, history=False) as run:
            for _ in range(args.requests):
                prompt = [rng.randrange(1, VOCAB) for _ in range(rng.randrange(4, 16))]
                with run.step(samples=1) as step:  # one request
                    made = generate(model, prompt, args.max_new_tokens, gpu)
                    step.count(tokens=len(made))
        result = run.result
    print(result.summary())
    for per in (result.per_work("token"), result.per_work("sample")):
        if per is not None:
            print(f"per {'request' if per.unit == 'sample' else per.unit}: {per}")
    return result


if __name__ == "__main__":
    main()
