"""Training throughput of the `jaxrnn train` model against the same model in PyTorch, side by side.

    python benchmarks/train_throughput.py [--batch 64 --seq-len 128 --hidden 256 --embed 64 --rounds 20]

One optimiser step each (embedding → LSTM → linear readout → cross-entropy, Adam, global-norm clip 1.0),
on the same random character batch: jaxrnn with the hand-written BPTT, jaxrnn with autodiff, and
torch.nn.LSTM (oneDNN on CPU). Calls interleaved after warm-up, medians, torch limited to the same number
of threads as the machine's cores. Reports characters per second (batch × seq_len / step time).
"""

from __future__ import annotations

import argparse
import os
import statistics

import jax
import numpy as np

from jaxrnn import _timing
from jaxrnn.training import CharLM
from jaxrnn.training._config import make_optimizer
from jaxrnn.training._steps import make_step


def jaxrnn_step(args, grad: str, inputs, targets):
    model = CharLM(args.vocab, "lstm", hidden=args.hidden, embed=args.embed)
    optimizer = make_optimizer("adam", clip=1.0)
    params = model.init(jax.random.key(0))
    state = [params, optimizer.init(params), model.initial_carry(args.batch)]
    step = jax.jit(make_step(model, optimizer, grad=grad, dtype=None))
    inputs, targets, key = jax.numpy.asarray(inputs), jax.numpy.asarray(targets), jax.random.key(1)
    lr = np.float32(2e-3)

    def call():
        out = step(*state, inputs, targets, key, lr)
        state[:] = [out.params, out.opt_state, out.carry]
        return out.loss

    return call


def torch_step(args, inputs, targets):
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    embedding = torch.nn.Embedding(args.vocab, args.embed)
    lstm = torch.nn.LSTM(args.embed, args.hidden)
    readout = torch.nn.Linear(args.hidden, args.vocab)
    parameters = [*embedding.parameters(), *lstm.parameters(), *readout.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=2e-3)
    inputs, targets = torch.from_numpy(inputs).long(), torch.from_numpy(targets).long()
    carry = [None]

    def call():
        optimizer.zero_grad(set_to_none=True)
        hs, (h, c) = lstm(embedding(inputs), carry[0])
        loss = torch.nn.functional.cross_entropy(readout(hs).flatten(0, 1), targets.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        carry[0] = (h.detach(), c.detach())
        return loss.item()

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, default in (("--batch", 64), ("--seq-len", 128), ("--hidden", 256), ("--embed", 64), ("--vocab", 103),
                          ("--rounds", 20)):
        parser.add_argument(flag, type=int, default=default)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    inputs = rng.integers(0, args.vocab, (args.seq_len, args.batch)).astype(np.int32)
    targets = rng.integers(0, args.vocab, (args.seq_len, args.batch)).astype(np.int32)
    calls = {
        "jaxrnn manual": jaxrnn_step(args, "manual", inputs, targets),
        "jaxrnn autodiff": jaxrnn_step(args, "autodiff", inputs, targets),
    }
    try:
        calls["torch.nn.LSTM"] = torch_step(args, inputs, targets)
    except ModuleNotFoundError:
        print("torch is not installed: skipping it (pip install torch==2.13.0 for the CPU build)")
    times = _timing.interleaved(calls, rounds=args.rounds)
    chars = args.batch * args.seq_len
    print(f"one training step, batch {args.batch} × {args.seq_len} characters, LSTM {args.hidden}, embedding "
          f"{args.embed}, vocabulary {args.vocab}; {args.rounds} interleaved rounds, medians; "
          f"{os.cpu_count()} cores; jax {jax.__version__} on {jax.default_backend()}\n")
    print("| implementation | ms per step | characters / s | time / jaxrnn manual |")
    print("|---|---|---|---|")
    for name, seconds in times.items():
        ratio = _timing.median_ratio(seconds, times["jaxrnn manual"])
        median = statistics.median(seconds)
        print(f"| {name} | {1e3 * median:.1f} | {chars / median:,.0f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
