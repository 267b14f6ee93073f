"""Torch thread settings under load: GPT training tokens/s with the default threads against each ``--threads N``.

The run is the README's small character-level GPT on Tiny Shakespeare (4 layers, 4 heads, 128 dims,
block 64, batch 12) through ``dlnlp gpt train`` in a fresh process per setting, for ``--seconds``
each, on an idle machine and with a second CPU-bound process running (``python -c 'while True:
pass'``, started before and killed after each run). Settings alternate within each repetition;
tokens/s is the median of the run's metrics lines (the first, warm-up, dropped), then the median over
``--reps``. The figure that matters (issue 20's Done-when): under load, the default's tokens/s as a
share of the best ``--threads`` setting's (``busy_default_vs_best``, to be >= 0.9).

``--env KEY=VALUE`` (repeatable) runs every setting with that environment too, to compare OpenMP
wait policies (``GOMP_SPINCOUNT``, ``OMP_WAIT_POLICY``); the default's own choice is in
``dlnlp/threads.py``.

Run: ``flock -x /tmp/cpu.lock python bench/threads.py`` (prints one JSON object).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DLNLP_SHARED", ROOT.parent / "shared"))
GPT_ARGS = ["--char", "--layers", "4", "--heads", "4", "--dim", "128", "--block-size", "64", "--batch-size", "12",
            "--eval-interval", "0", "--log-interval", "10", "--val-fraction", "0.01", "--quiet", "--json"]


def run_once(threads: str | None, seconds: float, busy: bool, env_extra: dict[str, str]) -> dict:
    """One training run; ``threads`` None is the default. Returns its tokens/s and thread count."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "gpt"
            env = {**os.environ, "PYTHONPATH": str(ROOT), **env_extra}
            for name in ("OMP_NUM_THREADS", "DLNLP_THREADS"):
                if name not in env_extra:
                    env.pop(name, None)
            cmd = [sys.executable, "-m", "dlnlp", "gpt", "train", str(SHARED / "corpora" / "tinyshakespeare.txt"),
                   *GPT_ARGS, "--max-time", str(seconds), "--out", str(out)]
            if threads is not None:
                cmd += ["--threads", threads]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr}")
            summary = json.loads(done.stdout)
            lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
            rates = [line["tokens_per_s"] for line in lines if "tokens_per_s" in line][1:]
            rate = statistics.median(rates) if rates else summary["tokens_per_s"]
            return {"tokens_per_s": rate, "threads": summary["threads"]}
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="--max-time of each run")
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--threads", default="1,2", help="the --threads settings to compare with the default")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for every run")
    parser.add_argument("--idle", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure without the busy process")
    args = parser.parse_args()
    env_extra = dict(item.split("=", 1) for item in args.env)
    settings: list[str | None] = [None, *args.threads.split(",")]
    loads = ["busy", "idle"] if args.idle else ["busy"]
    figures: dict[str, dict[str, list[float]]] = {load: {} for load in loads}
    default_threads = None
    for _ in range(args.reps):
        for load in loads:
            for threads in settings:
                result = run_once(threads, args.seconds, load == "busy", env_extra)
                name = "default" if threads is None else f"threads={threads}"
                figures[load].setdefault(name, []).append(result["tokens_per_s"])
                if threads is None:
                    default_threads = result["threads"]
    medians = {load: {name: round(statistics.median(values)) for name, values in runs.items()}
               for load, runs in figures.items()}
    report: dict = {"benchmark": "gpt train tokens/s by --threads", "seconds_per_run": args.seconds,
                    "reps": args.reps, "cpus": os.cpu_count(), "default_threads": default_threads,
                    "env": env_extra, "tokens_per_s": medians}
    for load in loads:
        best = max(value for name, value in medians[load].items() if name != "default")
        report[f"{load}_default_vs_best"] = round(medians[load]["default"] / best, 3)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
