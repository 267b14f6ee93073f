"""Benchmark: GloVe and PPMI-SVD on embed-train.txt, stage by stage, against Stanford GloVe's figures.

Stanford's C tools are not installed here (no network), so the peer side is the reference run the
issue records on this machine (window 10 symmetric with 1/d weighting, min-count 5, 100 dims,
25 iterations, W + W~, 2 threads). Each stage runs in its own process so its wall time and peak
resident memory (``wait4``'s ``ru_maxrss``) are its own:

* ``count``: vocabulary + co-occurrence counting (``corpus_cooccurrence``; numpy only), repeated;
* ``train``: the whole ``dlnlp glove train`` command (count + train + write) at x_max 10 and 100;
* ``count-10x``: counting the corpus repeated 10 times under a small ``--memory`` budget (spills
  sorted shards and merges them), to show the budget holds;
* ``ppmi``: ``dlnlp vectors ppmi-svd`` end to end.

Vectors are scored in this process: Google analogies (3CosAdd, restrict 30000 as word2vec's bench
and gensim's default; the vocabulary here has 18,149 words, so nothing is cut) as a share of all
19,544 questions, and WordSim-353 Spearman. Prints one JSON object; run under
``flock -x /tmp/cpu.lock``.

    python bench/glove.py [--repeats 3] [--train-repeats 1] [--memory-10x 0.25] [--torch-epochs 0]
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
ANALOGIES = SHARED / "eval" / "questions-words.txt"
WORDSIM = SHARED / "eval" / "wordsim353.tsv"

REFERENCE = {
    "nnz": 5_745_029,
    "count_seconds": [3.6, 4.0],
    "train_seconds_x10": 122.0,
    "end_to_end_seconds": 126.0,
    "entries_per_second": [1.1e6, 1.3e6],
    "x_max_10": {"analogy_all": 0.0124, "wordsim": 0.309},
    "x_max_100": {"analogy_all": 0.0111, "wordsim": 0.166},
}
SETTINGS = ["--window", "10", "--dim", "100", "--epochs", "25", "--min-count", "5"]

COUNT_SNIPPET = r"""
import json, sys, time
from dlnlp.models.ppmi_svd import corpus_cooccurrence
start = time.perf_counter()
vocab, matrix, stats = corpus_cooccurrence([sys.argv[1]], min_count=5, window=10,
                                           memory_bytes=int(float(sys.argv[2]) * (1 << 30)), tmp_dir=sys.argv[3])
stats["seconds"] = time.perf_counter() - start
stats["vocab_size"] = len(vocab)
matrix.close()
print(json.dumps(stats))
"""

BASELINE_SNIPPET = "import json, dlnlp.models.ppmi_svd; print(json.dumps({}))"


def measured(cmd: list[str]) -> list[str]:
    """Wrap a command so that it prints its own peak RSS (the child's ru_maxrss) as a last JSON line."""
    wrapper = ("import json, resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); sys.stdout.flush(); "
               "print(json.dumps({'maxrss_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss})); "
               "sys.exit(r.returncode)")
    return [sys.executable, "-c", wrapper, *cmd]


def run_measured(cmd: list[str]) -> tuple[dict, float, float]:
    """Run ``cmd`` (which prints one JSON object last); returns (that object, wall seconds, peak RSS MiB)."""
    start = time.perf_counter()
    proc = subprocess.run(measured(cmd), capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    rss = json.loads(lines[-1])["maxrss_kb"] / 1024
    return (json.loads(lines[-2]) if len(lines) >= 2 else {}), wall, rss


def evaluate(path: Path) -> dict:
    from dlnlp.evaluation.embeddings import evaluate_analogies, evaluate_similarity
    from dlnlp.io.vectors import load_vectors

    kv = load_vectors(path)
    analogy = evaluate_analogies(kv, ANALOGIES, restrict=30000)
    similarity = evaluate_similarity(kv, WORDSIM)
    return {"analogy_all": analogy["accuracy"], "analogy_covered": analogy["accuracy_covered"],
            "questions": analogy["questions"], "covered": analogy["covered"],
            "semantic_all": analogy["semantic"]["accuracy"], "syntactic_all": analogy["syntactic"]["accuracy"],
            "wordsim": similarity["spearman"], "wordsim_pairs": similarity["pairs_used"]}


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="repetitions of the counting stage")
    parser.add_argument("--train-repeats", type=int, default=1, help="repetitions of each full training run")
    parser.add_argument("--memory-10x", type=float, default=0.25, help="--memory (GiB) for the 10x corpus")
    parser.add_argument("--torch-epochs", type=int, default=0,
                        help="also time the batched Torch backend on CPU for this many epochs (0: skip)")
    parser.add_argument("--skip", default="", help="comma-separated stages to skip (count,train,10x,ppmi)")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    if not CORPUS.exists():
        sys.exit(f"shared corpus not found: {CORPUS}")
    dlnlp = [sys.executable, "-m", "dlnlp"]
    report: dict = {"corpus": str(CORPUS), "reference": REFERENCE, "settings": " ".join(SETTINGS)}
    with tempfile.TemporaryDirectory(prefix="dlnlp-bench-glove-") as tmp_name:
        tmp = Path(tmp_name)
        _, _, baseline_rss = run_measured([sys.executable, "-c", BASELINE_SNIPPET])
        report["import_rss_mib"] = baseline_rss

        if "count" not in skip:
            runs = []
            for _ in range(args.repeats):
                stats, wall, rss = run_measured([sys.executable, "-c", COUNT_SNIPPET, str(CORPUS), "1.0",
                                                          str(tmp)])
                runs.append({**stats, "wall": wall, "rss_mib": rss})
            report["count"] = {
                "nnz": runs[0]["nnz"], "nnz_matches_reference": runs[0]["nnz"] == REFERENCE["nnz"],
                "vocab_size": runs[0]["vocab_size"], "corpus_tokens": runs[0]["corpus_tokens"],
                "seconds_median": median([r["seconds"] for r in runs]),
                "vocab_seconds_median": median([r["vocab_seconds"] for r in runs]),
                "cooccur_seconds_median": median([r["cooccur_seconds"] for r in runs]),
                "seconds_all": [round(r["seconds"], 3) for r in runs],
                "peak_rss_mib": max(r["rss_mib"] for r in runs), "memory_budget_gib": 1.0,
            }
            print(json.dumps({"stage": "count", **report["count"]}), file=sys.stderr, flush=True)

        if "train" not in skip:
            for x_max in (10, 100):
                runs = []
                for rep in range(args.train_repeats):
                    out = tmp / f"glove-x{x_max}-{rep}.bin"
                    result, wall, rss = run_measured([*dlnlp, "glove", "train", str(CORPUS), *SETTINGS,
                                                               "--x-max", str(x_max), "--out", str(out), "--json",
                                                               "--quiet", "--force"])
                    quality = evaluate(out)
                    runs.append({**result, "process_wall": wall, "rss_mib": rss, **quality})
                ref = REFERENCE[f"x_max_{x_max}"]
                best = runs[0]
                entry = {
                    "wall_seconds_median": median([r["process_wall"] for r in runs]),
                    "count_seconds_median": median([r["count_seconds"] for r in runs]),
                    "train_seconds_median": median([r["train_seconds"] for r in runs]),
                    "entries_per_second_median": median([r["entries_per_second"] for r in runs]),
                    "backend": best["backend"], "peak_rss_mib": max(r["rss_mib"] for r in runs),
                    "final_cost": best["final_cost"],
                    "analogy_all": median([r["analogy_all"] for r in runs]),
                    "analogy_covered": median([r["analogy_covered"] for r in runs]),
                    "semantic_all": best["semantic_all"], "syntactic_all": best["syntactic_all"],
                    "wordsim": median([r["wordsim"] for r in runs]), "wordsim_pairs": best["wordsim_pairs"],
                    "covered": best["covered"], "questions": best["questions"],
                    "reference": ref,
                    "analogy_target_met": median([r["analogy_all"] for r in runs]) >= ref["analogy_all"] - 0.01,
                    "wordsim_target_met": median([r["wordsim"] for r in runs]) >= ref["wordsim"] - 0.02,
                    "speed_ratio_vs_reference_end_to_end": REFERENCE["end_to_end_seconds"]
                    / median([r["process_wall"] for r in runs]),
                    "runs": [{k: r[k] for k in ("process_wall", "train_seconds", "analogy_all", "wordsim")}
                             for r in runs],
                }
                report[f"glove_x_max_{x_max}"] = entry
                print(json.dumps({"stage": f"train x_max {x_max}", **entry}), file=sys.stderr, flush=True)

        if args.torch_epochs > 0:
            out = tmp / "glove-torch.bin"
            result, wall, rss = run_measured([*dlnlp, "glove", "train", str(CORPUS), *SETTINGS, "--x-max", "10",
                                                       "--epochs", str(args.torch_epochs), "--backend", "torch",
                                                       "--out", str(out), "--json", "--quiet", "--force"])
            report["glove_torch_cpu"] = {"epochs": args.torch_epochs, "train_seconds": result["train_seconds"],
                                         "entries_per_second": result["entries_per_second"], "rss_mib": rss,
                                         **evaluate(out)}
            print(json.dumps({"stage": "torch backend", **report["glove_torch_cpu"]}), file=sys.stderr, flush=True)

        if "10x" not in skip:
            big = tmp / "embed-train-10x.txt"
            text = CORPUS.read_bytes()
            with open(big, "wb") as handle:
                for _ in range(10):
                    handle.write(text)
            del text
            stats, wall, rss = run_measured([sys.executable, "-c", COUNT_SNIPPET, str(big),
                                                      str(args.memory_10x), str(tmp)])
            report["count_10x"] = {"corpus_tokens": stats["corpus_tokens"], "nnz": stats["nnz"],
                                   "shards": stats["shards"], "seconds": stats["seconds"],
                                   "memory_budget_mib": args.memory_10x * 1024, "peak_rss_mib": rss,
                                   "peak_rss_above_imports_mib": rss - baseline_rss,
                                   "within_budget": rss - baseline_rss <= args.memory_10x * 1024}
            big.unlink()
            print(json.dumps({"stage": "count 10x", **report["count_10x"]}), file=sys.stderr, flush=True)

        if "ppmi" not in skip:
            for window in (5, 10):
                out = tmp / f"ppmi-w{window}.bin"
                result, wall, rss = run_measured([*dlnlp, "vectors", "ppmi-svd", str(CORPUS), "--dim", "100",
                                                           "--window", str(window), "--min-count", "5",
                                                           "--out", str(out), "--json", "--quiet", "--force"])
                report[f"ppmi_svd_window_{window}"] = {"wall_seconds": wall, "count_seconds": result["count_seconds"],
                                                       "svd_seconds": result["svd_seconds"], "nnz": result["nnz"],
                                                       "peak_rss_mib": rss, **evaluate(out)}
                print(json.dumps({"stage": f"ppmi window {window}", **report[f"ppmi_svd_window_{window}"]}),
                      file=sys.stderr, flush=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
