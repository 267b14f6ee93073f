"""The GPU check: one script a maintainer runs on a lent NVIDIA machine, writing one JSON of results.

Sections, in this order (each catches its own failure and reports it; the exit code is 1 if any failed):

* ``env``: torch, CUDA, the devices.
* ``cuda_tests``: the test suite's CUDA tests (``pytest -m cuda``).
* ``gpt``: GPT at the GPT-2 small shape (12 layers, 12 heads, 768 dims, block 1024, vocabulary
  50,304) in bf16 with ``--compile``, trained by ``dlnlp gpt train`` from a token shard directory
  (``dlnlp.io.shards``) of random ids for ``--gpt-seconds``: tokens/s (the median of the log lines
  after compilation) and model FLOPs utilization, ``tokens/s x (6 N + 12 L d T) / peak`` (PaLM's
  appendix B count, as nanoGPT's ``estimate_mfu``; N without the position table), against the
  device's dense bf16 peak from :data:`PEAK_BF16`.
* ``word2vec``: skip-gram with negative sampling on ``../shared/corpora/embed-train.txt``, dlnlp on
  CUDA against gensim with 2 worker threads, one epoch each: words/s of each (their own trained-word
  counts over their own training time) and the ratio (target: 10).
* ``bert``: BERT pretraining (4 layers, 256 dims, sequences of 128, batch 32, masked LM) in bf16,
  dlnlp's ``Bert`` against transformers' ``BertForMaskedLM`` from the same weights on the same
  batches, alternating chunks: real (non-padding) tokens/s of each and the ratio.
* ``ddp``: ``torchrun --nproc-per-node N`` on the GPUs there are (N >= 2) against one GPU at the same
  per-device batch: tokens/s of both and the scaling efficiency ``tok/s(N) / (N x tok/s(1))``.
* ``lstm``: the character LSTM (3 layers of 512) on Tiny Shakespeare for up to 5 minutes (what is left
  of ``--budget``, at most ``--lstm-seconds``): the validation loss and whether it reached 1.45.

``--tiny`` runs every section at small shapes on whatever device there is (the CPU in CI), in
seconds: it checks that the script and the commands it drives work, not their speed.

Run: ``bench/gpu.sh --out gpu.json`` (the full check, at most about 8 minutes) or
``bench/gpu.sh --tiny``; the figures go into docs/benchmarks.md with the date and the device.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DLNLP_SHARED", ROOT.parent / "shared"))
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

# Dense bf16 tensor-core peaks (FLOP/s) from the vendors' datasheets, by a name fragment of
# torch.cuda.get_device_name(); the SXM figures (PCIe parts are lower: their MFU reads low).
PEAK_BF16 = {
    "H200": 989e12,
    "H100": 989e12,
    "GH200": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10": 125e12,
    "RTX 4090": 165e12,
    "RTX 3090": 71e12,
    "V100": 125e12,
}
LSTM_TARGET = 1.45


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("DLNLP_DEBUG", None)
    return env


def dlnlp(*args: str, timeout: float, launcher: list[str] | None = None) -> dict[str, Any]:
    """Run ``python -m dlnlp ARGS --json`` (under ``launcher``, e.g. torchrun); its JSON result."""
    command = [*(launcher or [sys.executable]), "-m", "dlnlp", *args, "--json"]
    result = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command[1:])} failed ({result.returncode}): {result.stderr.strip()[-1500:]}"
        )
    return json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][-1])


def steady_rate(run: Path, skip: int = 2) -> float | None:
    """The median tokens/s of a run's log lines after the first ``skip`` (compilation, warm-up)."""
    rates = [
        json.loads(line).get("tokens_per_s") for line in (run / "metrics.jsonl").read_text().splitlines()
    ]
    rates = [r for r in rates if r]
    return statistics.median(rates[skip:] or rates) if rates else None


def random_shards(directory: Path, vocab: int, tokens: int, seed: int = 0) -> Path:
    """A token shard directory of uniformly random ids (throughput does not depend on the text)."""
    import numpy as np

    from dlnlp.io.shards import ShardWriter

    directory.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    writer = ShardWriter(directory, vocab)
    for _ in range(0, tokens, 1 << 20):
        writer.write([rng.integers(0, vocab, size=1 << 20).tolist()])
    writer.finish(source="random ids")
    return directory


# -- sections ----------------------------------------------------------------------------------------------


def section_env(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    import torch

    cuda = torch.cuda.is_available()
    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": cuda,
        "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


def section_cuda_tests(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    if not args.cuda:
        return {"status": "skipped", "reason": "no CUDA device"}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-m",
        "cuda",
        "-p",
        "no:cacheprovider",
        str(ROOT / "tests"),
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=args.tests_timeout
    )
    counts = {
        k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|error|deselected)", result.stdout)
    }
    out = {"returncode": result.returncode, **counts}
    if result.returncode not in (0, 5):  # 5: no test collected
        out["status"] = "failed"
        out["tail"] = result.stdout[-2000:]
    return out


def section_gpt(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    if args.tiny:
        shape = {"layers": 2, "heads": 2, "dim": 64, "block": 64, "vocab": 512, "batch": 4}
        stop = ["--max-steps", "12"]
        extra = ["--precision", "fp32"]
    else:
        shape = {
            "layers": 12,
            "heads": 12,
            "dim": 768,
            "block": 1024,
            "vocab": 50304,
            "batch": args.gpt_batch,
        }
        stop = ["--max-time", str(args.gpt_seconds)]
        extra = ["--precision", "bf16", "--compile"]
    shards = random_shards(tmp / "gpt-shards", shape["vocab"], 4_000_000 if not args.tiny else 20_000)
    out = tmp / "gpt"
    summary = dlnlp(
        "gpt",
        "train",
        str(shards),
        "--out",
        str(out),
        "--layers",
        str(shape["layers"]),
        "--heads",
        str(shape["heads"]),
        "--dim",
        str(shape["dim"]),
        "--block-size",
        str(shape["block"]),
        "--batch-size",
        str(shape["batch"]),
        "--lr",
        "6e-4",
        "--warmup",
        "10",
        "--log-interval",
        "2" if args.tiny else "10",
        "--eval-interval",
        "1000000",
        "--val-fraction",
        "0.005",
        "--device",
        args.device,
        *extra,
        *stop,
        "--quiet",
        timeout=args.gpt_seconds + 600,
    )
    rate = steady_rate(out)
    n, layers, dim, block = summary["parameters"], shape["layers"], shape["dim"], shape["block"]
    flops_per_token = 6 * n + 12 * layers * dim * block  # n: without the position table (num_parameters)
    peak = _peak(args)
    result = {
        **shape,
        "parameters": n,
        "steps": summary["steps"],
        "tokens_per_s": rate,
        "flops_per_token": flops_per_token,
        "peak_flops": peak,
        "precision": extra[1],
        "compile": "--compile" in extra,
    }
    result["mfu"] = round(rate * flops_per_token / peak, 4) if rate and peak else None
    return result


def _peak(args: argparse.Namespace) -> float | None:
    if not args.cuda:
        return None
    import torch

    name = torch.cuda.get_device_name(0)
    return next((peak for key, peak in PEAK_BF16.items() if key in name), None)


def _corpus_slice(path: Path, lines: int, tmp: Path, name: str) -> Path:
    out = tmp / name
    with open(path, encoding="utf-8") as source, open(out, "w", encoding="utf-8") as sink:
        for i, line in enumerate(source):
            if i >= lines:
                break
            sink.write(line)
    return out


GENSIM = """
import json, sys
from gensim.models import Word2Vec
from gensim.models.word2vec import LineSentence
corpus, dim, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
model = Word2Vec(LineSentence(corpus), vector_size=dim, window=5, min_count=5, sample=1e-3, epochs=epochs,
                 workers=2, sg=1, hs=0, negative=5, seed=1)
words = model.corpus_total_words * epochs
print(json.dumps({"train_seconds": model.total_train_time, "words_per_s": words / model.total_train_time}))
"""


def section_word2vec(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    corpus = SHARED / "corpora" / "embed-train.txt"
    if not corpus.is_file():
        return {"status": "skipped", "reason": f"{corpus} not found"}
    if args.tiny:
        corpus = _corpus_slice(corpus, 2000, tmp, "embed-small.txt")
    dim = "32" if args.tiny else "100"
    ours = dlnlp(
        "word2vec",
        "train",
        str(corpus),
        "--arch",
        "skipgram",
        "--loss",
        "ns",
        "--negative",
        "5",
        "--dim",
        dim,
        "--window",
        "5",
        "--min-count",
        "5",
        "--sample",
        "1e-3",
        "--epochs",
        "1",
        "--device",
        args.device,
        "--seed",
        "1",
        "--out",
        str(tmp / "w2v.bin"),
        "--quiet",
        timeout=900,
    )
    result = {
        "corpus": str(corpus),
        "epochs": 1,
        "dim": int(dim),
        "device": args.device,
        "dlnlp_words_per_s": round(ours["words_per_second"], 1),
        "dlnlp_backend": ours.get("backend"),
    }
    try:
        import gensim  # noqa: F401
    except ImportError:
        return {**result, "gensim": "not installed"}
    peer = subprocess.run(
        [sys.executable, "-c", GENSIM, str(corpus), dim, "1"], capture_output=True, text=True, timeout=900
    )
    if peer.returncode != 0:
        raise RuntimeError(f"gensim failed: {peer.stderr[-1500:]}")
    gensim_rate = json.loads(peer.stdout.strip().splitlines()[-1])["words_per_s"]
    result.update(
        gensim_2core_words_per_s=round(gensim_rate, 1),
        ratio=round(ours["words_per_second"] / gensim_rate, 2),
        target_ratio=10,
    )
    return result


def section_bert(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    import torch

    try:
        import transformers
    except ImportError:
        return {"status": "skipped", "reason": "transformers not installed"}
    from dlnlp.kernels.device import autocast
    from dlnlp.models.bert import Bert
    from dlnlp.models.bert_hf import bert_config_from_hf, hf_to_dlnlp_state
    from dlnlp.tokenization import load_tokenizer
    from dlnlp.tokenization.train import TrainSpec, train_tokenizer
    from dlnlp.training.bert_data import PretrainingBatches, SpecialIds, prepare_bert_data

    corpus = SHARED / "corpora" / "embed-train.txt"
    if not corpus.is_file():
        return {"status": "skipped", "reason": f"{corpus} not found"}
    corpus = _corpus_slice(corpus, 1000 if args.tiny else 60000, tmp, "bert-corpus.txt")
    config = (
        {"dim": 64, "layers": 2, "heads": 2, "intermediate": 128, "seq": 64, "batch": 8, "vocab": 500}
        if args.tiny
        else {
            "dim": 256,
            "layers": 4,
            "heads": 4,
            "intermediate": 1024,
            "seq": 128,
            "batch": 32,
            "vocab": 8000,
        }
    )
    steps, chunk = (6, 3) if args.tiny else (args.bert_steps, 25)
    lines = corpus.read_text(encoding="utf-8").splitlines()
    tok_path = tmp / "wordpiece.json"
    tok_path.write_bytes(
        train_tokenizer(lines, TrainSpec(model="wordpiece", vocab_size=config["vocab"], lowercase=True))
    )
    tokenizer = load_tokenizer(tok_path)
    data = prepare_bert_data([str(corpus)], tmp / "bert-run", tokenizer=tokenizer, val_fraction=0.0)
    specials = SpecialIds.from_tokenizer(tokenizer)
    source = PretrainingBatches(
        data.train,
        config["batch"],
        max_len=config["seq"],
        specials=specials,
        vocab_size=tokenizer.vocab_size,
        next_sentence="none",
        seed=0,
    )
    device = torch.device(args.device if args.device != "auto" else ("cuda" if args.cuda else "cpu"))
    dtype = torch.bfloat16 if device.type == "cuda" else None
    batches = [{k: v.to(device) for k, v in source.next_batch()[0].items()} for _ in range(steps)]
    torch.manual_seed(0)
    hf_config = transformers.BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=config["dim"],
        num_hidden_layers=config["layers"],
        num_attention_heads=config["heads"],
        intermediate_size=config["intermediate"],
        max_position_embeddings=config["seq"],
        pad_token_id=specials.pad,
    )
    hf = transformers.BertForMaskedLM(hf_config).to(device)
    ours = Bert(bert_config_from_hf(hf_config.to_dict(), mlm_head=True, nsp_head=False, pooler=False))
    ours.load_saved_state(hf_to_dlnlp_state(hf.state_dict()))
    ours.to(device)

    def loss_ours(batch):
        return ours(
            batch["input_ids"],
            batch["token_type_ids"],
            batch["attention_mask"],
            mlm_labels=batch["mlm_labels"],
        ).mlm_loss

    def loss_hf(batch):
        return hf(
            input_ids=batch["input_ids"],
            token_type_ids=batch["token_type_ids"],
            attention_mask=batch["attention_mask"],
            labels=batch["mlm_labels"],
        ).loss

    runs = {"dlnlp": (ours, loss_ours), "transformers": (hf, loss_hf)}
    optimizers = {name: torch.optim.AdamW(model.parameters(), lr=1e-4) for name, (model, _) in runs.items()}
    rates: dict[str, list[float]] = {name: [] for name in runs}
    order = list(runs)
    for start in range(0, steps, chunk):
        for name in order:
            model, loss_fn = runs[name]
            model.train()
            tokens = 0
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            began = time.perf_counter()
            for batch in batches[start : start + chunk]:
                with autocast(device, dtype):
                    loss = loss_fn(batch)
                loss.backward()
                optimizers[name].step()
                optimizers[name].zero_grad(set_to_none=True)
                tokens += int(batch["attention_mask"].sum())
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            rates[name].append(tokens / (time.perf_counter() - began))
        order.reverse()
    medians = {name: statistics.median(r[1:] or r) for name, r in rates.items()}
    return {
        **config,
        "steps": steps,
        "device": str(device),
        "precision": "bf16" if dtype else "fp32",
        "dlnlp_tokens_per_s": round(medians["dlnlp"], 1),
        "transformers_tokens_per_s": round(medians["transformers"], 1),
        "ratio": round(medians["dlnlp"] / medians["transformers"], 3),
    }


def section_ddp(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    import torch

    gpus = torch.cuda.device_count() if args.cuda else 0
    if not args.tiny and gpus < 2:
        return {"status": "skipped", "reason": f"{gpus} GPU(s): data parallelism needs 2 or more"}
    nproc = 2 if args.tiny else gpus
    shape = (
        ["--layers", "2", "--heads", "2", "--dim", "32", "--block-size", "32"]
        if args.tiny
        else ["--layers", "6", "--heads", "8", "--dim", "512", "--block-size", "512", "--precision", "bf16"]
    )
    batch = 4 if args.tiny else 16
    steps = "10" if args.tiny else "60"
    shards = random_shards(
        tmp / "ddp-shards", 256 if args.tiny else 50304, 50_000 if args.tiny else 4_000_000
    )
    common = [
        str(shards),
        *shape,
        "--max-steps",
        steps,
        "--log-interval",
        "2" if args.tiny else "10",
        "--eval-interval",
        "1000000",
        "--val-fraction",
        "0.01",
        "--device",
        "cpu" if args.tiny else "cuda",
        "--quiet",
    ]
    # one process at the per-device batch: the throughput DDP scales (not in --tiny: CPU rates mean nothing)
    one = (
        None
        if args.tiny
        else dlnlp(
            "gpt", "train", "--out", str(tmp / "ddp1"), "--batch-size", str(batch), *common, timeout=900
        )
    )
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    many = dlnlp(
        "gpt",
        "train",
        "--out",
        str(tmp / "ddpN"),
        "--batch-size",
        str(batch),
        *common,
        timeout=900,
        launcher=torchrun,
    )
    # the same global batch on one process: the loss DDP must reproduce
    same = dlnlp(
        "gpt",
        "train",
        "--out",
        str(tmp / "ddp1big"),
        "--batch-size",
        str(batch * nproc),
        *common,
        timeout=900,
    )
    rate_one, rate_many = (steady_rate(tmp / "ddp1") if one else None), steady_rate(tmp / "ddpN")
    return {
        "processes": nproc,
        "backend": "gloo" if args.tiny else "nccl",
        "batch_per_process": batch,
        "steps": int(steps),
        "tokens_per_s_1": rate_one,
        "tokens_per_s_n": rate_many,
        "scaling_efficiency": round(rate_many / (nproc * rate_one), 3) if rate_one and rate_many else None,
        "val_loss_n": many["val_loss"],
        "val_loss_1_same_global_batch": same["val_loss"],
        "val_loss_difference": abs(many["val_loss"] - same["val_loss"]),
    }


def section_lstm(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    corpus = SHARED / "corpora" / "tinyshakespeare.txt"
    if not corpus.is_file():
        return {"status": "skipped", "reason": f"{corpus} not found"}
    if args.tiny:
        model = ["--layers", "1", "--hidden", "32", "--embed", "16", "--seq-len", "32", "--batch-size", "8"]
        stop = ["--max-steps", "20"]
        corpus = _corpus_slice(corpus, 2000, tmp, "shakespeare-small.txt")
        seconds = None
    else:
        left = args.budget - (time.perf_counter() - args.started) - 30  # startup, validation, saving
        seconds = int(max(30, min(args.lstm_seconds, left)))
        model = [
            "--layers",
            "3",
            "--hidden",
            "512",
            "--embed",
            "128",
            "--seq-len",
            "128",
            "--batch-size",
            "64",
            "--dropout",
            "0.2",
            "--precision",
            "bf16",
        ]
        stop = ["--max-time", str(seconds)]
    summary = dlnlp(
        "rnn",
        "train",
        str(corpus),
        "--out",
        str(tmp / "lstm"),
        "--cell",
        "lstm",
        *model,
        "--lr",
        "2e-3",
        "--clip",
        "5",
        "--schedule",
        "cosine",
        "--warmup",
        "100",
        "--eval-interval",
        "1000000",
        "--device",
        args.device,
        *stop,
        "--quiet",
        timeout=(seconds or 60) + 600,
    )
    result = {
        "seconds": seconds,
        "steps": summary["steps"],
        "val_loss": summary["val_loss"],
        "tokens_per_s": summary["tokens_per_s"],
        "target_val_loss": LSTM_TARGET,
    }
    if not args.tiny:
        result["target_met"] = summary["val_loss"] <= LSTM_TARGET
    return result


SECTIONS = {
    "env": section_env,
    "cuda_tests": section_cuda_tests,
    "gpt": section_gpt,
    "word2vec": section_word2vec,
    "bert": section_bert,
    "ddp": section_ddp,
    "lstm": section_lstm,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="small shapes, seconds, on any device (CI)")
    parser.add_argument("--out", type=Path, help="write the JSON here too (it is always printed)")
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help="comma-separated, from: " + ", ".join(SECTIONS)
    )
    parser.add_argument(
        "--budget", type=float, default=480, help="seconds for the whole check (the LSTM gets the rest)"
    )
    parser.add_argument("--gpt-seconds", type=float, default=45)
    parser.add_argument("--gpt-batch", type=int, default=16)
    parser.add_argument("--bert-steps", type=int, default=150)
    parser.add_argument("--lstm-seconds", type=float, default=300)
    parser.add_argument("--tests-timeout", type=float, default=120)
    args = parser.parse_args(argv)
    args.started = time.perf_counter()
    import torch

    args.cuda = torch.cuda.is_available()
    args.device = "cuda" if args.cuda else "cpu"
    chosen = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown sections: {', '.join(unknown)}")
    report: dict[str, Any] = {
        "benchmark": "gpu check",
        "tiny": args.tiny,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["bench/gpu.py", *(argv if argv is not None else sys.argv[1:])]),
    }
    failed = False
    with tempfile.TemporaryDirectory(prefix="dlnlp-gpu-check-") as tmp:
        for name in chosen:
            began = time.perf_counter()
            try:
                result = SECTIONS[name](args, Path(tmp))
                result.setdefault("status", "ok")
            except Exception as exc:  # noqa: BLE001 - one section's failure is reported, the others still run
                result = {
                    "status": "error",
                    "error": f"{type(exc).__name__}: {exc}"[-2000:],
                    "traceback": traceback.format_exc()[-2000:],
                }
            result["seconds_taken"] = round(time.perf_counter() - began, 1)
            failed |= result["status"] in ("error", "failed")
            report[name] = result
            print(
                f"gpu check: {name}: {result['status']} ({result['seconds_taken']} s)",
                file=sys.stderr,
                flush=True,
            )
    report["total_seconds"] = round(time.perf_counter() - args.started, 1)
    text = json.dumps(report, indent=1, default=str)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
