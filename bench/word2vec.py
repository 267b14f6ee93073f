"""Benchmark: dlnlp word2vec vs gensim 4.x, side by side on the same corpus and settings.

For skip-gram+NS, skip-gram+HS and CBOW+NS (dim 100, window 5, min-count 5, sample 1e-3,
5 epochs, 2 workers) each side is run --repeats times, alternating which goes first. Both run as
whole processes (``dlnlp word2vec train`` and a ``python -c`` gensim script), so the words/s
figures include start-up, reading, vocabulary and writing the vectors: words/s = corpus tokens x
epochs / wall seconds. gensim's own train-only time (``total_train_time``) is reported too. Both
sides' vectors are scored with the same evaluator (analogies restricted to 30,000 words,
WordSim-353 Spearman), which agrees with gensim's ``evaluate_word_analogies`` /
``evaluate_word_pairs`` (tests/evaluation).

Usage: flock -x /tmp/cpu.lock python bench/word2vec.py [--repeats 3] [--configs sg-ns,sg-hs,cbow-ns]
Prints one JSON object (medians and ratios) on stdout.
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
CORPUS = SHARED / "corpora" / "embed-train.txt"
ANALOGY = SHARED / "eval" / "questions-words.txt"
WORDSIM = SHARED / "eval" / "wordsim353.tsv"

CONFIGS = {
    "sg-ns": {"arch": "skipgram", "loss": "ns", "sg": 1, "hs": 0, "negative": 5},
    "sg-hs": {"arch": "skipgram", "loss": "hs", "sg": 1, "hs": 1, "negative": 0},
    "cbow-ns": {"arch": "cbow", "loss": "ns", "sg": 0, "hs": 0, "negative": 5},
}
SETTINGS = {"dim": 100, "window": 5, "min_count": 5, "sample": 1e-3, "epochs": 5, "workers": 2}

GENSIM_SCRIPT = """
import json, sys, time
from gensim.models import Word2Vec
from gensim.models.word2vec import LineSentence
corpus, out, sg, hs, negative, dim, window, min_count, sample, epochs, workers, seed = sys.argv[1:]
model = Word2Vec(LineSentence(corpus), vector_size=int(dim), window=int(window), min_count=int(min_count),
                 sample=float(sample), epochs=int(epochs), workers=int(workers), sg=int(sg), hs=int(hs),
                 negative=int(negative), seed=int(seed))
model.wv.save_word2vec_format(out, binary=True)
print(json.dumps({"train_seconds": model.total_train_time, "vocab_size": len(model.wv)}))
"""


def run_dlnlp(config: dict, out: Path, seed: int) -> dict:
    cmd = [sys.executable, "-m", "dlnlp", "word2vec", "train", str(CORPUS), "--arch", config["arch"],
           "--loss", config["loss"], "--negative", str(config["negative"] or 5), "--dim", str(SETTINGS["dim"]),
           "--window", str(SETTINGS["window"]), "--min-count", str(SETTINGS["min_count"]),
           "--sample", str(SETTINGS["sample"]), "--epochs", str(SETTINGS["epochs"]),
           "--workers", str(SETTINGS["workers"]), "--seed", str(seed), "--out", str(out), "--force", "--quiet",
           "--json"]
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"dlnlp failed: {result.stderr}")
    info = json.loads(result.stdout)
    return {"wall_seconds": wall, "train_seconds": info["train_seconds"]}


def run_gensim(config: dict, out: Path, seed: int) -> dict:
    cmd = [sys.executable, "-c", GENSIM_SCRIPT, str(CORPUS), str(out), str(config["sg"]), str(config["hs"]),
           str(config["negative"]), str(SETTINGS["dim"]), str(SETTINGS["window"]), str(SETTINGS["min_count"]),
           str(SETTINGS["sample"]), str(SETTINGS["epochs"]), str(SETTINGS["workers"]), str(seed)]
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"gensim failed: {result.stderr[-2000:]}")
    info = json.loads(result.stdout.strip().splitlines()[-1])
    return {"wall_seconds": wall, "train_seconds": info["train_seconds"]}


def evaluate(path: Path) -> dict:
    from dlnlp.evaluation.embeddings import evaluate_analogies, evaluate_similarity
    from dlnlp.io.vectors import load_vectors

    kv = load_vectors(path)
    analogy = evaluate_analogies(kv, ANALOGY, restrict=30000)
    similarity = evaluate_similarity(kv, WORDSIM)
    return {"analogy_all": analogy["accuracy"], "analogy_covered": analogy["accuracy_covered"],
            "analogy_questions": analogy["questions"], "analogy_covered_questions": analogy["covered"],
            "wordsim_spearman": similarity["spearman"], "wordsim_pairs": similarity["pairs_used"]}


def median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    args = parser.parse_args()
    tokens = sum(len(line.split()) for line in CORPUS.open(encoding="utf-8"))
    words = tokens * SETTINGS["epochs"]
    report: dict = {"corpus": str(CORPUS), "corpus_tokens": tokens, "settings": SETTINGS, "repeats": args.repeats,
                    "configs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs.split(","):
            config = CONFIGS[name]
            runs: dict[str, list[dict]] = {"dlnlp": [], "gensim": []}
            for rep in range(args.repeats):
                order = ["dlnlp", "gensim"] if rep % 2 == 0 else ["gensim", "dlnlp"]
                for side in order:
                    out = Path(tmp) / f"{side}-{name}-{rep}.bin"
                    timing = (run_dlnlp if side == "dlnlp" else run_gensim)(config, out, seed=rep + 1)
                    timing["words_per_second"] = words / timing["wall_seconds"]
                    timing["words_per_second_train"] = words / timing["train_seconds"]
                    timing.update(evaluate(out))
                    runs[side].append(timing)
                    print(f"{name} {side} run {rep + 1}: {json.dumps(timing)}", file=sys.stderr, flush=True)
            summary = {}
            for side, side_runs in runs.items():
                summary[side] = {key: median(side_runs, key) for key in side_runs[0]}
                summary[side]["analogy_all_range"] = [min(r["analogy_all"] for r in side_runs),
                                                      max(r["analogy_all"] for r in side_runs)]
                summary[side]["wordsim_range"] = [min(r["wordsim_spearman"] for r in side_runs),
                                                  max(r["wordsim_spearman"] for r in side_runs)]
            d, g = summary["dlnlp"], summary["gensim"]
            summary["ratios"] = {
                "throughput_whole_process": d["words_per_second"] / g["words_per_second"],
                "throughput_dlnlp_whole_vs_gensim_train_only": d["words_per_second"] / g["words_per_second_train"],
                "throughput_train_only": d["words_per_second_train"] / g["words_per_second_train"],
                "analogy_all_points": 100 * (d["analogy_all"] - g["analogy_all"]),
                "analogy_covered_points": 100 * (d["analogy_covered"] - g["analogy_covered"]),
                "wordsim_difference": d["wordsim_spearman"] - g["wordsim_spearman"],
            }
            summary["runs"] = runs
            report["configs"][name] = summary
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
