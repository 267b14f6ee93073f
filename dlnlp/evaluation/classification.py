"""Classification and span-labelling scores: accuracy, macro-F1, the confusion matrix, and
conlleval's chunk F1 (CoNLL-2000 shared task, Tjong Kim Sang & Buchholz 2000).

Chunks follow ``conlleval.pl`` exactly: a tag is ``B-TYPE``, ``I-TYPE``, ``E-TYPE`` or ``O`` (IOB1,
IOB2/BIO and IOE all read); a chunk starts at a ``B``, at an ``I`` or ``E`` after ``O`` or after
a chunk of another type, and ends where the next one starts or at ``O``; each sentence starts and
ends outside any chunk. A predicted chunk is correct when a gold chunk has the same first word, last
word and type. Precision = correct / predicted chunks, recall = correct / gold chunks, F1 their
harmonic mean, per type and overall; token accuracy counts every token (``O`` included), as
conlleval's "accuracy".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any


def _split(tag: str) -> tuple[str, str]:
    prefix, dash, kind = tag.partition("-")
    return (prefix, kind) if dash else (tag, "")


def _ends(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """conlleval's endOfChunk: does a chunk end between the previous token and this one?"""
    return ((prev_tag in ("B", "I") and tag in ("B", "O")) or (prev_tag == "E" and tag in ("E", "I", "O"))
            or (prev_tag not in ("O", ".") and prev_type != type_) or prev_tag in ("[", "]"))


def _starts(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """conlleval's startOfChunk: does a chunk start at this token?"""
    return ((tag == "B" and prev_tag in ("B", "I", "O")) or (prev_tag == "O" and tag in ("I", "E"))
            or (prev_tag == "E" and tag in ("E", "I")) or (tag not in ("O", ".") and prev_type != type_)
            or tag in ("[", "]"))


def chunks(tags: Sequence[str]) -> set[tuple[int, int, str]]:
    """The chunks ``(first, last, type)`` of one sentence's tags, word positions inclusive."""
    found = set()
    prev_tag, prev_type = "O", ""
    start: int | None = None
    for i, raw in enumerate([*tags, "O"]):  # the sentence ends outside any chunk
        tag, type_ = _split(raw)
        if start is not None and _ends(prev_tag, tag, prev_type, type_):
            found.add((start, i - 1, prev_type))
            start = None
        if _starts(prev_tag, tag, prev_type, type_):
            start = i
        prev_tag, prev_type = tag, type_
    return found


def _prf(correct: int, predicted: int, gold: int) -> dict[str, float]:
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def span_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, Any]:
    """conlleval's scores over sentences: ``precision``, ``recall``, ``f1`` (fractions, not percent),
    ``accuracy`` (tokens), counts, and ``per_type`` {type: precision, recall, f1, gold, predicted}."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold sentences but {len(predicted)} predicted")
    correct, n_gold, n_pred = Counter(), Counter(), Counter()
    tokens = right = 0
    for g, p in zip(gold, predicted, strict=True):
        if len(g) != len(p):
            raise ValueError(f"a sentence of {len(g)} gold tags has {len(p)} predicted")
        tokens += len(g)
        right += sum(a == b for a, b in zip(g, p, strict=True))
        gold_chunks, pred_chunks = chunks(g), chunks(p)
        n_gold.update(t for _, _, t in gold_chunks)
        n_pred.update(t for _, _, t in pred_chunks)
        correct.update(t for _, _, t in gold_chunks & pred_chunks)
    total = _prf(sum(correct.values()), sum(n_pred.values()), sum(n_gold.values()))
    per_type = {t: {**_prf(correct[t], n_pred[t], n_gold[t]), "gold": n_gold[t], "predicted": n_pred[t]}
                for t in sorted(set(n_gold) | set(n_pred))}
    return {**total, "accuracy": right / tokens if tokens else 0.0, "tokens": tokens,
            "gold_chunks": sum(n_gold.values()), "predicted_chunks": sum(n_pred.values()),
            "correct_chunks": sum(correct.values()), "per_type": per_type}


def classification_scores(gold: Sequence[str], predicted: Sequence[str],
                          labels: Sequence[str] | None = None) -> dict[str, Any]:
    """Accuracy, macro-F1 (the unweighted mean of each label's F1, sklearn's ``average="macro"`` over
    ``labels``), per-label precision/recall/F1 and the confusion matrix ``[gold][predicted]``."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predicted")
    names = list(labels) if labels is not None else sorted(set(gold) | set(predicted))
    names += sorted(set(gold) - set(names))  # a gold label the model never knew still counts
    index = {name: i for i, name in enumerate(names)}
    matrix = [[0] * len(names) for _ in names]
    for g, p in zip(gold, predicted, strict=True):
        matrix[index[g]][index[p]] += 1
    per_label = {}
    for i, name in enumerate(names):
        tp = matrix[i][i]
        per_label[name] = {**_prf(tp, sum(row[i] for row in matrix), sum(matrix[i])), "support": sum(matrix[i])}
    n = len(gold)
    return {"accuracy": sum(matrix[i][i] for i in range(len(names))) / n if n else 0.0,
            "macro_f1": sum(v["f1"] for v in per_label.values()) / len(names) if names else 0.0,
            "examples": n, "labels": names, "per_label": per_label, "confusion": matrix}


def regression_scores(gold: Sequence[float], predicted: Sequence[float]) -> dict[str, Any]:
    """Mean squared error and Pearson's r."""
    n = len(gold)
    if n == 0:
        return {"mse": 0.0, "pearson": 0.0, "examples": 0}
    mse = sum((a - b) ** 2 for a, b in zip(gold, predicted, strict=True)) / n
    mg, mp = sum(gold) / n, sum(predicted) / n
    cov = sum((a - mg) * (b - mp) for a, b in zip(gold, predicted, strict=True))
    vg = sum((a - mg) ** 2 for a in gold) ** 0.5
    vp = sum((b - mp) ** 2 for b in predicted) ** 0.5
    return {"mse": mse, "pearson": cov / (vg * vp) if vg and vp else 0.0, "examples": n}


def confusion_table(scores: dict[str, Any]) -> str:
    """The confusion matrix as aligned text: rows gold, columns predicted."""
    names = scores["labels"]
    width = max([len(n) for n in names] + [len(str(max((max(r) for r in scores["confusion"]), default=0))), 4])
    lines = ["gold \\ pred".ljust(width + 2) + " ".join(n.rjust(width) for n in names)]
    for name, row in zip(names, scores["confusion"], strict=True):
        lines.append(name.ljust(width + 2) + " ".join(str(v).rjust(width) for v in row))
    return "\n".join(lines)
