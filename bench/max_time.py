"""``--max-time`` as a wall-clock budget: every trainer run with ``--max-time 60`` on real data, and the
wall time of the whole command (process start to exit: imports, reading the corpus, training, the
final validation and the save) measured around it.

The runs (one at a time, each in its own process, default settings unless noted):

* ``gpt train``: Tiny Shakespeare, character level (the README's small configuration);
* ``rnn train``: Tiny Shakespeare, character level, a 2-layer LSTM of 256;
* ``bert pretrain``: Brown's training part with a WordPiece tokenizer trained on it first (not timed),
  4 layers of 256;
* ``word2vec train``: embed-train.txt, skip-gram with negative sampling, 50 epochs (more than fit);
* ``glove train``: embed-train.txt, 1,000 iterations (more than fit).

Issue 20's Done-when: each ends within ``--max-time`` + 5 s, validated and saved. Prints one JSON
object: per trainer the wall seconds, the exit code, how it stopped, and whether the output exists.

Run: ``python bench/max_time.py`` (about six minutes; the runs are bounded by their budget, so a busy
machine changes how far they train, not how long they take).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DLNLP_SHARED", ROOT.parent / "shared"))
CORPORA = SHARED / "corpora"


def dlnlp(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "dlnlp", *args], env=env, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise SystemExit(f"dlnlp {' '.join(args)} failed: {done.stderr}")
    return done


def runs(tmp: Path, budget: str) -> dict[str, list[str]]:
    shakes = str(CORPORA / "tinyshakespeare.txt")
    brown = str(CORPORA / "brown" / "train.txt")
    embed = str(CORPORA / "embed-train.txt")
    return {
        "gpt": ["gpt", "train", shakes, "--char", "--max-time", budget, "--out", str(tmp / "gpt")],
        "rnn": ["rnn", "train", shakes, "--cell", "lstm", "--max-time", budget, "--out", str(tmp / "rnn")],
        "bert": ["bert", "pretrain", brown, "--tokenizer", str(tmp / "wp.json"), "--max-time", budget,
                 "--out", str(tmp / "bert")],
        "word2vec": ["word2vec", "train", embed, "--epochs", "50", "--max-time", budget,
                     "--out", str(tmp / "w2v.bin")],
        "glove": ["glove", "train", embed, "--epochs", "1000", "--max-time", budget, "--out", str(tmp / "glove.bin")],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-time", default="60")
    parser.add_argument("--only", help="comma-separated trainers (gpt, rnn, bert, word2vec, glove)")
    args = parser.parse_args()
    report: dict = {"max_time": float(args.max_time), "cpus": os.cpu_count(), "runs": {}}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        chosen = runs(tmp, args.max_time)
        if args.only:
            chosen = {k: v for k, v in chosen.items() if k in args.only.split(",")}
        if "bert" in chosen:
            dlnlp("tokenize", "train", str(CORPORA / "brown" / "train.txt"), "--model", "wordpiece",
                  "--vocab-size", "8000", "--out", str(tmp / "wp.json"))
        for trainer, command in chosen.items():
            started = time.perf_counter()
            done = dlnlp(*command, "--json", "--quiet", check=False)
            wall = time.perf_counter() - started
            out = Path(command[command.index("--out") + 1])
            row = {"wall_s": round(wall, 2), "exit": done.returncode, "saved": out.exists(),
                   "within_5s": wall <= float(args.max_time) + 5}
            if done.returncode == 0:
                summary = json.loads(done.stdout)
                for key in ("stopped_by", "steps", "val_loss", "val_full", "threads", "stopped_early",
                            "epochs_completed", "words_trained"):
                    if key in summary:
                        row[key] = summary[key]
            else:
                row["error"] = done.stderr.strip().splitlines()[-1:]
            report["runs"][trainer] = row
            print(json.dumps({trainer: row}), file=sys.stderr, flush=True)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
