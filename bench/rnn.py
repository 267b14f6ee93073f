"""Benchmark: `dlnlp rnn train` against a minimal hand-written PyTorch loop, side by side.

Model and data are the issue's: a character LSTM (embedding 64, 2 layers of 256) on Tiny
Shakespeare (last 10% held out), 32 streams of 128 characters, Adam 2e-3, gradient clipping at 5.

* ``throughput``: alternates a hand-written truncated-BPTT loop and `dlnlp rnn train` (each a
  fresh subprocess, each for ``--seconds`` of training with no validation), ``--reps`` times, and
  reports characters/s of each (measured after the first ``--warmup`` steps) and the median ratio.
* ``budget``: one `dlnlp rnn train` run with a wall-clock budget (``--budget`` s, default 300) using
  the trainer's weight averaging (``--ema 0.99``, constant learning rate), then the validation loss over the whole
  validation text (`dlnlp rnn eval`).

Run the long parts under the exclusive CPU lock on the shared machine::

    flock -x /tmp/cpu.lock python bench/rnn.py throughput --seconds 40 --reps 3
    flock -x /tmp/cpu.lock python bench/rnn.py budget --budget 300

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CORPUS = SHARED / "corpora" / "tinyshakespeare.txt"
DLNLP = [sys.executable, "-m", "dlnlp"]

MODEL_ARGS = ["--cell", "lstm", "--embed", "64", "--hidden", "256", "--layers", "2", "--seq-len", "128",
              "--batch-size", "32", "--lr", "2e-3", "--clip", "5", "--device", "cpu", "--seed", "0"]
# What the budget run adds: the constant learning rate of the reference loop, with the weights
# averaged (an exponential moving average, decay 0.99) for validation and saving.
BUDGET_ARGS = ["--schedule", "constant", "--ema", "0.99"]


def hand_loop(seconds: float, warmup: int) -> dict:
    """The minimal hand-written loop: same model, same streams, same optimizer and clipping."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    text = CORPUS.read_text(encoding="utf-8")
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
    train = data[: int(len(data) * 0.9)]
    B, T = 32, 128
    L = (len(train) - 1) // B
    xs = train[: B * L].view(B, L)
    ys = train[1: B * L + 1].view(B, L)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(len(chars), 64)
            self.lstm = nn.LSTM(64, 256, num_layers=2, batch_first=True)
            self.out = nn.Linear(256, len(chars))

        def forward(self, x, state):
            h, state = self.lstm(self.emb(x), state)
            return self.out(h), state

    model = Model()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    state, pos, step, tokens = None, 0, 0, 0
    start = None
    while True:
        if pos + T > L:
            pos, state = 0, None
        x, y = xs[:, pos:pos + T], ys[:, pos:pos + T]
        pos += T
        logits, state = model(x, state)
        state = tuple(s.detach() for s in state)
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        step += 1
        if step == warmup:
            start = time.perf_counter()
        elif start is not None:
            tokens += x.numel()
            if time.perf_counter() - start >= seconds:
                break
    return {"tokens_per_s": tokens / (time.perf_counter() - start), "final_loss": loss.item(), "steps": step}


def dlnlp_run(seconds: float, warmup: int, workdir: Path) -> dict:
    out = workdir / "tp"
    # the trainer logs tokens/s per interval; log every `warmup` steps and drop the first interval
    cmd = [*DLNLP, "rnn", "train", str(CORPUS), "--out", str(out), "--force", "--quiet", *MODEL_ARGS,
           "--max-time", str(seconds + 5), "--eval-interval", "0", "--log-interval", str(warmup),
           "--val-fraction", "0.1"]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    logs = [r for r in rows if "tokens_per_s" in r]
    first, last = logs[0], logs[-1]
    rate = (last["tokens"] - first["tokens"]) / (last["elapsed"] - first["elapsed"])
    return {"tokens_per_s": rate, "final_loss": last["loss"], "steps": last["step"]}


def throughput(args: argparse.Namespace) -> dict:
    hand, ours = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.reps):
            proc = subprocess.run([sys.executable, __file__, "_hand", "--seconds", str(args.seconds),
                                   "--warmup", str(args.warmup)], check=True, capture_output=True, text=True)
            hand.append(json.loads(proc.stdout)["tokens_per_s"])
            ours.append(dlnlp_run(args.seconds, args.warmup, Path(tmp))["tokens_per_s"])
    ratios = [o / h for o, h in zip(ours, hand, strict=True)]
    return {"benchmark": "rnn throughput", "hand_tokens_per_s": hand, "dlnlp_tokens_per_s": ours,
            "hand_median": statistics.median(hand), "dlnlp_median": statistics.median(ours),
            "ratio_median": statistics.median(ratios), "ratios": ratios, "seconds": args.seconds,
            "reps": args.reps}


def budget(args: argparse.Namespace) -> dict:
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp()) / "budget"
    cmd = [*DLNLP, "rnn", "train", str(CORPUS), "--out", str(out), "--force", *MODEL_ARGS, *BUDGET_ARGS,
           "--max-time", str(args.budget), "--eval-interval", "0", "--log-interval", "100", "--json"]
    train = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    text = CORPUS.read_text(encoding="utf-8")
    val_file = out.parent / "val.txt"
    val_file.write_text(text[int(len(text) * 0.9):], encoding="utf-8")
    evaluated = json.loads(subprocess.run([*DLNLP, "rnn", "eval", str(out), str(val_file), "--json", "--device",
                                           "cpu"], check=True, capture_output=True, text=True).stdout)
    return {"benchmark": "rnn budget", "command": " ".join(["dlnlp", *cmd[3:]]), "budget_s": args.budget,
            "train": train, "eval": evaluated, "target_val_loss": 1.52,
            "met": train["val_loss"] <= 1.52}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    tp = sub.add_parser("throughput")
    tp.add_argument("--seconds", type=float, default=40)
    tp.add_argument("--reps", type=int, default=3)
    tp.add_argument("--warmup", type=int, default=20)
    bd = sub.add_parser("budget")
    bd.add_argument("--budget", type=float, default=300)
    bd.add_argument("--out", default=None)
    hd = sub.add_parser("_hand")
    hd.add_argument("--seconds", type=float, default=40)
    hd.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    if args.mode == "_hand":
        print(json.dumps(hand_loop(args.seconds, args.warmup)))
        return
    result = throughput(args) if args.mode == "throughput" else budget(args)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
