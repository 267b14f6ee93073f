"""Scaling out on one machine: torchrun DDP against one process, and token shards against text.

Sections (both by default; ``--section`` picks one):

* ``ddp``: a character GPT (4 layers, 4 heads, 128 dims, block 64) on Tiny Shakespeare (last 10%
  held out), ``--steps`` steps at a global batch of 32 windows: one process at ``--batch-size 32``
  against ``torchrun --nproc-per-node 2`` at ``--batch-size 16``, one thread per process (as torchrun
  sets it; on a shared machine more threads than cores stall). Both draw the same windows (see dlnlp/training/distributed.py), so
  the final validation loss over the whole held-out text must agree (within 0.01); tokens/s of each
  (the median of the log lines after the first).
* ``shards``: a GPT on Tiny Shakespeare encoded by a byte-level BPE tokenizer (vocabulary 1,000),
  trained from the text (``gpt train text -t tok``: the run spools the ids first) and from a shard
  directory written by ``tokenize encode --format bin`` (read in place), alternating ``--reps`` times:
  tokens/s in training and the wall time of the whole command of each; then the peak resident
  memory of training from shards of the corpus and of the corpus ten times over.

Run: ``flock -x /tmp/cpu.lock python bench/scale.py`` (prints one JSON object).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DLNLP_SHARED", ROOT.parent / "shared"))
CORPUS = SHARED / "corpora" / "tinyshakespeare.txt"

GPT = [
    "--layers",
    "4",
    "--heads",
    "4",
    "--dim",
    "128",
    "--block-size",
    "64",
    "--lr",
    "1e-3",
    "--warmup",
    "20",
    "--eval-interval",
    "1000000",
    "--device",
    "cpu",
    "--seed",
    "0",
    "--quiet",
    "--json",
]
# Runs a command and prints its peak resident memory (the largest of its process tree's, in KiB).
PEAK_RSS = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(r.returncode)"
)


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **extra}  # see the docstring
    env.pop("DLNLP_DEBUG", None)
    return env


def run(
    args: list[str], *, launcher: list[str] | None = None, env: dict | None = None, measure_rss: bool = False
) -> tuple[dict, float, int | None]:
    """(JSON result, wall seconds, peak RSS in MiB) of ``dlnlp ARGS``."""
    command = [*(launcher or [sys.executable]), "-m", "dlnlp", *args]
    if measure_rss:
        command = [sys.executable, "-c", PEAK_RSS, *command]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env or _env())
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr[-2000:]}")
    rss = int(result.stderr.strip().splitlines()[-1]) // 1024 if measure_rss else None
    return json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][-1]), wall, rss


def steady_rate(out: Path) -> float:
    rates = [
        json.loads(line).get("tokens_per_s") for line in (out / "metrics.jsonl").read_text().splitlines()
    ]
    rates = [r for r in rates if r]
    return statistics.median(rates[1:] or rates)


def bench_ddp(steps: int, tmp: Path) -> dict:
    stop = ["--max-steps", str(steps), "--log-interval", str(max(1, steps // 10))]
    # one thread per process (as torchrun sets it): one process on one core against two on two
    one, one_wall, _ = run(
        ["gpt", "train", str(CORPUS), "--out", str(tmp / "one"), "--batch-size", "32", *GPT, *stop],
        env=_env(OMP_NUM_THREADS="1"),
    )
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    two, two_wall, _ = run(
        ["gpt", "train", str(CORPUS), "--out", str(tmp / "two"), "--batch-size", "16", *GPT, *stop],
        launcher=torchrun,
    )
    return {
        "benchmark": "ddp",
        "command_one": "dlnlp gpt train tinyshakespeare.txt --batch-size 32 " + " ".join(GPT + stop),
        "command_two": "torchrun --standalone --nproc-per-node 2 -m dlnlp gpt train tinyshakespeare.txt "
        "--batch-size 16 " + " ".join(GPT + stop),
        "steps": steps,
        "global_batch": 32,
        "val_loss_one": one["val_loss"],
        "val_loss_two": two["val_loss"],
        "val_loss_difference": abs(one["val_loss"] - two["val_loss"]),
        "tokens_per_s_one": steady_rate(tmp / "one"),
        "tokens_per_s_two": steady_rate(tmp / "two"),
        "wall_s_one": round(one_wall, 1),
        "wall_s_two": round(two_wall, 1),
    }


def bench_shards(steps: int, reps: int, tmp: Path) -> dict:
    tok = tmp / "tok.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "dlnlp",
            "tokenize",
            "train",
            str(CORPUS),
            "--vocab-size",
            "1000",
            "--out",
            str(tok),
            "--quiet",
        ],
        check=True,
        env=_env(),
    )
    big = tmp / "shakespeare-x10.txt"
    text = CORPUS.read_bytes()
    big.write_bytes(text * 10)
    for name, source in (("bin1", CORPUS), ("bin10", big)):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "dlnlp",
                "tokenize",
                "encode",
                str(source),
                "-t",
                str(tok),
                "--add-eos",
                "--format",
                "bin",
                "--output",
                str(tmp / name),
                "--quiet",
            ],
            check=True,
            env=_env(),
        )
    stop = ["--max-steps", str(steps), "--log-interval", str(max(1, steps // 10)), "--batch-size", "32"]
    rates: dict[str, list[float]] = {"text": [], "shards": []}
    walls: dict[str, list[float]] = {"text": [], "shards": []}
    for rep in range(reps):
        order = ["text", "shards"] if rep % 2 == 0 else ["shards", "text"]
        for kind in order:
            out = tmp / f"{kind}{rep}"
            inputs = [str(CORPUS), "-t", str(tok)] if kind == "text" else [str(tmp / "bin1")]
            _, wall, _ = run(
                ["gpt", "train", *inputs, "--out", str(out), *GPT, *stop], env=_env(OMP_NUM_THREADS="1")
            )
            rates[kind].append(steady_rate(out))
            walls[kind].append(round(wall, 2))
    rss = {}
    for name in ("bin1", "bin10"):
        _, _, rss[name] = run(
            ["gpt", "train", str(tmp / name), "--out", str(tmp / f"rss-{name}"), *GPT, *stop],
            measure_rss=True,
        )
    _, _, rss["text1"] = run(
        ["gpt", "train", str(CORPUS), "-t", str(tok), "--out", str(tmp / "rss-text1"), *GPT, *stop],
        measure_rss=True,
    )
    _, _, rss["text10"] = run(
        ["gpt", "train", str(big), "-t", str(tok), "--out", str(tmp / "rss-text10"), *GPT, *stop],
        measure_rss=True,
    )
    return {
        "benchmark": "shards",
        "steps": steps,
        "reps": reps,
        "tokens_per_s_text": rates["text"],
        "tokens_per_s_shards": rates["shards"],
        "speed_ratio_shards_over_text": round(
            statistics.median(rates["shards"]) / statistics.median(rates["text"]), 3
        ),
        "wall_s_text": walls["text"],
        "wall_s_shards": walls["shards"],
        "peak_rss_mib": rss,
        "rss_ratio_shards_x10": round(rss["bin10"] / rss["bin1"], 3),
        "rss_ratio_text_x10": round(rss["text10"] / rss["text1"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--section", choices=["all", "ddp", "shards"], default="all")
    parser.add_argument("--steps", type=int, default=300, help="steps of the DDP comparison")
    parser.add_argument("--shard-steps", type=int, default=150, help="steps of each shard/text run")
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    out = {}
    with tempfile.TemporaryDirectory(prefix="dlnlp-scale-") as tmp:
        if args.section in ("all", "ddp"):
            out["ddp"] = bench_ddp(args.steps, Path(tmp))
        if args.section in ("all", "shards"):
            out["shards"] = bench_shards(args.shard_steps, args.reps, Path(tmp))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
