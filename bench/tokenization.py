"""Benchmark ``dlnlp tokenize`` against the engines called directly.

Encode: the whole ``dlnlp tokenize encode CORPUS -t T --output F`` process (start-up, reading,
encoding, writing ids included) against ``tokenizers`` (``encode_batch`` on the whole file in one
Python process) for HF byte-level BPE with vocabulary 8000, and against ``sentencepiece`` (its
multi-threaded list ``encode``) for a sentencepiece BPE model. The library side is timed two ways:
the batch call alone (the stricter reference) and its whole process (start-up, reading the file and
writing the same ids text included).

Train: the whole ``dlnlp tokenize train`` process against the library's own trainer reading the
files itself (``Tokenizer.train(files)``, ``SentencePieceTrainer.train(input=...)``) with the same
settings, on Brown train + ABC news; again the call alone and the whole process.

Runs alternate (dlnlp, library, dlnlp, ...) and the medians are compared. Prints one JSON object.

dlnlp's modules are byte-compiled first (``compileall``), as a pip install does for an installed
package and as the library's modules are: in an editable checkout under ``PYTHONDONTWRITEBYTECODE``
every run would otherwise recompile them from source (about 20 ms a process).

    python bench/tokenization.py [--repeats 5] [--only encode|train|help]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DLNLP_SHARED", ROOT.parent / "shared"))
ENCODE_CORPUS = SHARED / "corpora" / "embed-train.txt"
TRAIN_CORPORA = [SHARED / "corpora" / "brown" / "train.txt", SHARED / "corpora" / "abc-news.txt"]
VOCAB = 8000


def dlnlp_command() -> list[str]:
    """The installed console script beside this Python (no shell shims), else ``python -m dlnlp``."""
    script = Path(sys.executable).with_name("dlnlp")
    return [str(script)] if script.exists() else [sys.executable, "-m", "dlnlp"]


def timed(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{result.stderr}")
    return seconds, result.stdout


# The library side, as one Python process: prints the seconds of the batch call alone.
HF_ENCODE = r"""
import sys, time
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
with open(sys.argv[2], encoding="utf-8", newline="") as f:
    lines = f.read().split("\n")
if lines and lines[-1] == "":
    lines.pop()
start = time.perf_counter()
encodings = tok.encode_batch(lines)
call = time.perf_counter() - start
with open(sys.argv[3], "w", encoding="utf-8") as f:
    f.write("".join(" ".join(map(str, e.ids)) + "\n" for e in encodings))
print(call)
"""

SP_ENCODE = r"""
import os, sys, time
import sentencepiece as spm
sp = spm.SentencePieceProcessor(model_file=sys.argv[1])
with open(sys.argv[2], encoding="utf-8", newline="") as f:
    lines = f.read().split("\n")
if lines and lines[-1] == "":
    lines.pop()
start = time.perf_counter()
ids = sp.encode(lines, out_type=int, num_threads=os.cpu_count())
call = time.perf_counter() - start
with open(sys.argv[3], "w", encoding="utf-8") as f:
    f.write("".join(" ".join(map(str, x)) + "\n" for x in ids))
print(call)
"""

HF_TRAIN = r"""
import sys, time
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
trainer = trainers.BpeTrainer(vocab_size=int(sys.argv[2]), min_frequency=2, special_tokens=["<|endoftext|>"],
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
start = time.perf_counter()
tok.train(sys.argv[3:], trainer=trainer)
call = time.perf_counter() - start
tok.save(sys.argv[1])
print(call)
"""

SP_TRAIN = r"""
import os, sys, time
import sentencepiece as spm
start = time.perf_counter()
spm.SentencePieceTrainer.train(
    input=",".join(sys.argv[3:]), model_prefix=sys.argv[1], model_type="bpe", vocab_size=int(sys.argv[2]),
    normalization_rule_name="identity", remove_extra_whitespaces=False, character_coverage=1.0,
    num_threads=os.cpu_count(), minloglevel=2, max_sentence_length=1 << 20)
print(time.perf_counter() - start)
"""


def median(values: list[float]) -> float:
    return round(statistics.median(values), 4)


def compare(name: str, dlnlp_cmd: list[str], library_cmd: list[str], repeats: int, size_bytes: int) -> dict:
    """Alternate the two commands; the library prints its call time on stdout."""
    ours, lib_process, lib_call = [], [], []
    for _ in range(repeats):
        seconds, _ = timed(dlnlp_cmd)
        ours.append(seconds)
        seconds, out = timed(library_cmd)
        lib_process.append(seconds)
        lib_call.append(float(out.strip().splitlines()[-1]))
    result = {
        "dlnlp_process_s": median(ours),
        "library_call_s": median(lib_call),
        "library_process_s": median(lib_process),
        "runs_dlnlp_s": [round(s, 3) for s in ours],
        "runs_library_call_s": [round(s, 3) for s in lib_call],
        # speed ratio = library time / dlnlp time (>= 0.8 is the encode target)
        "speed_vs_library_call": round(statistics.median(lib_call) / statistics.median(ours), 3),
        "speed_vs_library_process": round(statistics.median(lib_process) / statistics.median(ours), 3),
        # time ratio = dlnlp time / library time (<= 1.2 is the training target)
        "time_vs_library_call": round(statistics.median(ours) / statistics.median(lib_call), 3),
        "time_vs_library_process": round(statistics.median(ours) / statistics.median(lib_process), 3),
    }
    if size_bytes:
        result["dlnlp_MB_per_s"] = round(size_bytes / 1e6 / statistics.median(ours), 2)
        result["library_call_MB_per_s"] = round(size_bytes / 1e6 / statistics.median(lib_call), 2)
    print(f"{name}: {json.dumps(result)}", file=sys.stderr)
    return result


def bench_encode(work: Path, repeats: int) -> dict:
    sys.path.insert(0, str(ROOT))
    from dlnlp.io.corpus import iter_lines
    from dlnlp.tokenization.train import TrainSpec, train_tokenizer

    hf_tok = work / "bytelevel-8000.json"
    sp_tok = work / "sp-bpe-8000.model"
    hf_tok.write_bytes(train_tokenizer(iter_lines([str(ENCODE_CORPUS)]), TrainSpec(model="bpe", vocab_size=VOCAB)))
    sp_tok.write_bytes(train_tokenizer(iter_lines([str(ENCODE_CORPUS)]),
                                       TrainSpec(model="bpe", engine="sentencepiece", vocab_size=VOCAB)))
    size = ENCODE_CORPUS.stat().st_size
    results = {}
    for name, tok, script in (("hf_bytelevel_bpe", hf_tok, HF_ENCODE), ("sentencepiece_bpe", sp_tok, SP_ENCODE)):
        ours = [*dlnlp_command(), "tokenize", "encode", str(ENCODE_CORPUS), "-t", str(tok),
                "--output", str(work / "dlnlp.ids"), "--force", "--quiet"]
        library = [sys.executable, "-c", script, str(tok), str(ENCODE_CORPUS), str(work / "library.ids")]
        results[name] = compare(f"encode {name}", ours, library, repeats, size)
        same = (work / "dlnlp.ids").read_bytes() == (work / "library.ids").read_bytes()
        results[name]["same_ids_as_library"] = same
    return results


def bench_train(work: Path, repeats: int) -> dict:
    files = [str(p) for p in TRAIN_CORPORA]
    size = sum(p.stat().st_size for p in TRAIN_CORPORA)
    results = {}
    ours = [*dlnlp_command(), "tokenize", "train", *files, "--model", "bpe", "--vocab-size", str(VOCAB),
            "--out", str(work / "train-dlnlp.json"), "--force", "--quiet"]
    library = [sys.executable, "-c", HF_TRAIN, str(work / "train-lib.json"), str(VOCAB), *files]
    results["hf_bytelevel_bpe"] = compare("train hf", ours, library, repeats, size)
    ours = [*dlnlp_command(), "tokenize", "train", *files, "--engine", "sentencepiece", "--model", "bpe",
            "--vocab-size", str(VOCAB), "--out", str(work / "train-dlnlp.model"), "--force", "--quiet"]
    library = [sys.executable, "-c", SP_TRAIN, str(work / "train-lib"), str(VOCAB), *files]
    results["sentencepiece_bpe"] = compare("train sentencepiece", ours, library, repeats, size)
    return results


def bench_help(repeats: int) -> dict:
    times = [timed([*dlnlp_command(), "--help"])[0] for _ in range(max(repeats, 5))]
    return {"median_s": median(times), "runs_s": [round(t, 3) for t in times]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", choices=["encode", "train", "help"])
    args = parser.parse_args()
    for path in [ENCODE_CORPUS, *TRAIN_CORPORA]:
        if not path.exists():
            raise SystemExit(f"shared corpus not found: {path}")
    import compileall

    import sentencepiece
    import tokenizers

    compileall.compile_dir(str(ROOT / "dlnlp"), quiet=1)
    report: dict = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
        "tokenizers": tokenizers.__version__, "sentencepiece": sentencepiece.__version__,
        "repeats": args.repeats, "command": dlnlp_command(),
    }
    work = Path(tempfile.mkdtemp(prefix="dlnlp-bench-tokenize-"))
    try:
        if args.only in (None, "help"):
            report["help"] = bench_help(args.repeats)
        if args.only in (None, "encode"):
            report["encode"] = {"corpus": str(ENCODE_CORPUS), "bytes": ENCODE_CORPUS.stat().st_size,
                                **bench_encode(work, args.repeats)}
        if args.only in (None, "train"):
            report["train"] = {"corpora": [str(p) for p in TRAIN_CORPORA], "vocab_size": VOCAB,
                               **bench_train(work, args.repeats)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
