"""The PyTorch anchor for `jaxrnn train --time`: a plain torch.nn.LSTM trained for a wall-time budget.

    python benchmarks/torch_anchor.py [--seconds 300 --out benchmarks/results/training/torch_anchor.jsonl]

Embedding 64 → torch.nn.LSTM 256 → linear readout, batch 64 × 128 characters, Adam 2e-3 (constant), global-norm
clip 1.0, torch limited to the machine's cores. The data is jaxrnn's own: the same corpus (the standard library's
``.py`` files by default), vocabulary, training streams (state carried from chunk to chunk, reset at each epoch)
and the same validation window (32 rows of 4096 characters spread through the split), so its bits per character
compare with ``jaxrnn train``'s. It evaluates every ``--eval-every`` steps and at the end; the budget counts
everything from the start of training (evals included), as ``--time`` does. Writes one JSON record per eval.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from jaxrnn.training import Vocabulary, read_corpus
from jaxrnn.training._corpus import VALIDATION_ROWS, Streams, split, validation_slice


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="training budget (default 300)")
    parser.add_argument("--corpus", default=None, help="a UTF-8 text file (default: the standard library's source)")
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/training/torch_anchor.jsonl"))
    args = parser.parse_args()

    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(args.seed)
    began = time.perf_counter()
    text = read_corpus(args.corpus)
    vocab = Vocabulary.from_text(text)
    train_ids, val_ids = split(vocab.encode(text))
    batch, seq_len, hidden, embed = 64, 128, 256, 64
    streams = Streams.build(train_ids, batch, seq_len, args.seed)
    window = torch.from_numpy(validation_slice(val_ids, VALIDATION_ROWS, 131072).astype(np.int64))

    embedding = torch.nn.Embedding(len(vocab), embed)
    lstm = torch.nn.LSTM(embed, hidden)
    readout = torch.nn.Linear(hidden, len(vocab))
    parameters = [*embedding.parameters(), *lstm.parameters(), *readout.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=2e-3)

    def evaluate() -> float:
        with torch.no_grad():
            hs, _ = lstm(embedding(window[:-1]))
            nats = torch.nn.functional.cross_entropy(readout(hs).flatten(0, 1), window[1:].flatten())
        return nats.item() / math.log(2)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    records, carry, step, eval_s = [], None, 0, 0.0
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads: LSTM {hidden}, batch {batch} × {seq_len}, "
          f"Adam 2e-3, clip 1.0, {args.seconds:.0f} s", flush=True)
    while True:
        started = time.perf_counter()
        inputs, targets, fresh = streams.batch(step)
        if fresh:
            carry = None
        optimizer.zero_grad(set_to_none=True)
        hs, (h, c) = lstm(embedding(torch.from_numpy(inputs.astype(np.int64))), carry)
        loss = torch.nn.functional.cross_entropy(readout(hs).flatten(0, 1),
                                                 torch.from_numpy(targets.astype(np.int64)).flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        carry = (h.detach(), c.detach())
        step += 1
        now = time.perf_counter()
        last = now - began + (now - started) + eval_s > args.seconds  # one more step and the final eval would not fit
        if step % args.eval_every == 0 or last:
            records.append({"step": step, "val_bpc": evaluate(), "elapsed_s": round(time.perf_counter() - began, 3)})
            eval_s = time.perf_counter() - now
            print(f"step {step}  val {records[-1]['val_bpc']:.3f} bpc  {records[-1]['elapsed_s']:.0f} s", flush=True)
        if last:
            break
    args.out.write_text("".join(json.dumps(record) + "\n" for record in records))
    print(f"done: step {step}, validation {records[-1]['val_bpc']:.3f} bits per character in "
          f"{records[-1]['elapsed_s']:.0f} s; wrote {args.out}")


if __name__ == "__main__":
    main()
