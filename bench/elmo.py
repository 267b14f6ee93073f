"""Benchmark: `dlnlp elmo` side by side with its peers (issue #14).

* ``throughput``: `dlnlp elmo train` against a hand-written PyTorch loop of the same architecture
  (char-CNN over UTF-8 bytes with masked max-pooling, highway, projection; a forward and a backward
  LSTM stack with residual connections; one adaptive softmax; the same streams, Adam and clipping),
  each a fresh subprocess for ``--seconds`` of training, alternating, ``--reps`` times; words/s of
  each after ``--warmup`` steps and the median ratio (target >= 0.95).
* ``brown``: the biLM trained on Brown train for ``--budget`` seconds (the issue: at most 1800 on
  this CPU), then `dlnlp elmo eval` on Brown valid beside `dlnlp ngram` modified Kneser-Ney order 5
  with ``--min-count 3`` on the same tokens (reference 185.4); done when forward and backward
  perplexity are each <= 167.
* ``mr``: a biLM trained on ``embed-train.txt`` for ``--budget`` seconds and skip-gram vectors
  (`dlnlp word2vec`) of the same corpus; the same classifier on MR train, scored on MR dev: logistic
  regression on standardized features, fit by L-BFGS with the L2 strength chosen on a held-out tenth
  of train (SentEval's protocol); MR is lowercased and tokenized as ``embed-train.txt`` is. It reads
  ELMo's hidden states mean- or max-pooled per layer and combined by a scalar mix learned with it
  (Peters et al. eq. 1; for the mean, the same as pooling the mixed states), or mean-pooled skip-gram
  vectors; the learned mix weights are reported. The ``elmo_concat_mean`` rows give the classifier every
  layer's mean side by side instead of a mix (``margin_points_concat``). Each ELMo row is read twice: every sentence from zero
  state, and from the warmed-up state (``_warm``: ``ElmoEncoder.warm_up`` on the first ``--warm-lines``
  lines of the training text, since the biLM trained on a stream). An existing ``--out`` keeps its biLM and vectors
  (``--retrain`` trains them again). Target: ELMo >= skip-gram + 3.

Run the long parts under the exclusive CPU lock on the shared machine (``bench/elmo_recipe.sh``
runs all three)::

    flock -x /tmp/cpu.lock python bench/elmo.py throughput --seconds 60 --reps 3
    flock -x /tmp/cpu.lock python bench/elmo.py brown --budget 1800
    flock -x /tmp/cpu.lock python bench/elmo.py mr --budget 3600 --extra "--dim 256"   # the closest run

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# embed-train.txt's tokenization (shared/README.md), applied to MR so that both models read the words
# they were trained on: no punctuation tokens the biLM never saw, "kids'" -> "kids".
CORPUS_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
SHARED = Path(os.environ.get("DLNLP_SHARED", ROOT.parent / "shared"))
BROWN = SHARED / "corpora" / "brown"
EMBED_TRAIN = SHARED / "corpora" / "embed-train.txt"
STARTS = {"zero": "", "warm": "_warm"}  # the biLM's start state for each sentence -> the result key's suffix
MR = SHARED / "corpora" / "mr"
DLNLP = [sys.executable, "-m", "dlnlp"]

# The sizes chosen for a 30-minute CPU budget from 2-minute pilot runs (issue #14's report): a small
# char-CNN (256 filters, one highway layer), one LSTM layer of 512 cells projected to 128 per
# direction (at equal time it beat 256 cells without projection, which runs 1.5x the words/s), an
# adaptive softmax over the 20,854 words, streams of 64 x 20 words. --extra overrides any of them.
FILTERS = "1:32,2:32,3:64,4:64,5:64"
MODEL = {
    "dim": 128,
    "hidden": 512,
    "layers": 1,
    "highway": 1,
    "char_dim": 16,
    "dropout": 0.1,
    "cutoffs": "2000,10000",
    "batch_size": 64,
    "seq_len": 20,
    "lr": 4e-3,
}
REFERENCE_NGRAM = 185.4
TARGET = 167.0


EXTRA: list[str] = []  # --extra: options appended after the preset (the last of a repeated option wins)


def model_args(model: dict | None = None) -> list[str]:
    m = {**MODEL, **(model or {})}
    return [
        "--dim",
        str(m["dim"]),
        "--hidden",
        str(m["hidden"]),
        "--layers",
        str(m["layers"]),
        "--filters",
        FILTERS,
        "--highway",
        str(m["highway"]),
        "--char-dim",
        str(m["char_dim"]),
        "--dropout",
        str(m["dropout"]),
        "--softmax",
        "adaptive",
        "--cutoffs",
        m["cutoffs"],
        "--batch-size",
        str(m["batch_size"]),
        "--seq-len",
        str(m["seq_len"]),
        "--lr",
        str(m["lr"]),
        "--clip",
        "1",
        "--min-count",
        "3",
        "--device",
        "cpu",
        "--seed",
        "0",
        *EXTRA,
    ]


# -- the hand-written loop -------------------------------------------------------------------------------


def hand_loop(seconds: float, warmup: int) -> dict:
    """The same model, data and optimizer as `dlnlp elmo train` with MODEL, written from scratch."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.manual_seed(0)
    m = MODEL
    B, T, D, H, max_chars = m["batch_size"], m["seq_len"], m["dim"], m["hidden"], 50
    filters = [[int(x) for x in f.split(":")] for f in FILTERS.split(",")]
    # data: word types (</s> = 0), vocabulary of the training words seen >= 3 times
    types = {"</s>": 0}
    stream = [0]
    with open(BROWN / "train.txt", encoding="utf-8") as handle:
        for line in handle:
            stream.extend(
                types.setdefault(w, len(types)) for w in line.split() if w not in ("<s>", "</s>", "<unk>")
            )
            stream.append(0)
    stream = np.asarray(stream, dtype=np.int64)
    counts = np.bincount(stream, minlength=len(types))
    order = [i for i in np.argsort(-counts[1:], kind="stable") + 1 if counts[i] >= 3]
    out = np.zeros(len(types), dtype=np.int64)  # <unk> = 0
    out[0] = 1  # </s> = 1
    out[order] = np.arange(2, len(order) + 2)
    V = len(order) + 2
    chars = np.zeros((len(types), max_chars), dtype=np.int64)
    for word, i in types.items():
        ids = [259] if word == "</s>" else [b + 1 for b in word.encode("utf-8")[: max_chars - 2]]
        chars[i, : len(ids) + 2] = [257, *ids, 258]
    chars_t, out_t = torch.from_numpy(chars), torch.from_numpy(out)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            width = sum(n for _, n in filters)
            self.emb = nn.Embedding(260, m["char_dim"], padding_idx=0)
            self.convs = nn.ModuleList(nn.Conv1d(m["char_dim"], n, w) for w, n in filters)
            self.hw_t = nn.ModuleList(nn.Linear(width, width) for _ in range(m["highway"]))
            self.hw_g = nn.ModuleList(nn.Linear(width, width) for _ in range(m["highway"]))
            self.proj = nn.Linear(width, D)
            proj = D if D < H else 0
            self.fwd = nn.ModuleList(
                nn.LSTM(D, H, batch_first=True, proj_size=proj) for _ in range(m["layers"])
            )
            self.bwd = nn.ModuleList(
                nn.LSTM(D, H, batch_first=True, proj_size=proj) for _ in range(m["layers"])
            )
            self.softmax = nn.AdaptiveLogSoftmaxWithLoss(D, V, [2000, 10000], div_value=4.0)

        def words(self, c):
            lengths = (c != 0).sum(1)
            wmax = max(w for w, _ in filters)
            c = F.pad(c, (0, max(0, int(lengths.max()) + wmax - 1 - c.size(1))))[
                :, : int(lengths.max()) + wmax - 1
            ]
            x = self.emb(c).transpose(1, 2)
            pooled = []
            for conv in self.convs:
                y = conv(x)
                y = y.masked_fill(~(torch.arange(y.size(-1)) < lengths[:, None])[:, None], float("-inf"))
                pooled.append(F.relu(y.amax(-1)))
            h = torch.cat(pooled, -1)
            for t, g in zip(self.hw_t, self.hw_g, strict=True):
                gate = torch.sigmoid(g(h))
                h = gate * F.relu(t(h)) + (1 - gate) * h
            return self.proj(h)

        def direction(self, layers, x, state, reverse):
            x = F.dropout(x, m["dropout"], self.training)
            if reverse:
                x = x.flip(1)
            new = []
            for i, lstm in enumerate(layers):
                y, s = lstm(x, None if state is None else state[i])
                if i > 0:
                    y = y + x
                new.append(s)
                x = F.dropout(y, m["dropout"], self.training) if i < len(layers) - 1 else y
            if reverse:
                x = x.flip(1)
            return F.dropout(x, m["dropout"], self.training), new

    model = Model()
    with torch.no_grad():
        for g in model.hw_g:
            g.bias.fill_(-2.0)
    opt = torch.optim.AdamW(model.parameters(), lr=m["lr"], weight_decay=0.0)
    L = (len(stream) - 1) // B
    rev = stream[::-1].copy()
    fx, fy = (
        torch.from_numpy(stream[: B * L].reshape(B, L)),
        torch.from_numpy(stream[1 : B * L + 1].reshape(B, L)),
    )
    bx, by = torch.from_numpy(rev[: B * L].reshape(B, L)), torch.from_numpy(rev[1 : B * L + 1].reshape(B, L))
    pos, step, tokens, start = 0, 0, 0, None
    fs = bs = None
    model.train()
    while True:
        if pos + T > L:
            pos, fs, bs = 0, None, None
        f_in, f_tg = fx[:, pos : pos + T], out_t[fy[:, pos : pos + T]]
        b_in, b_tg = bx[:, pos : pos + T].flip(1), out_t[by[:, pos : pos + T].flip(1)]
        pos += T
        uniq, inverse = torch.unique(torch.cat([f_in.reshape(-1), b_in.reshape(-1)]), return_inverse=True)
        c = chars_t[uniq]
        vectors = model.words(c[:, : int((c != 0).sum(1).max())])
        n = f_in.numel()
        hf, fs = model.direction(model.fwd, vectors[inverse[:n].view(B, -1)], fs, False)
        hb, bs = model.direction(model.bwd, vectors[inverse[n:].view(B, -1)], bs, True)
        loss = 0.5 * (
            model.softmax(hf.reshape(-1, D), f_tg.reshape(-1)).loss
            + model.softmax(hb.reshape(-1, D), b_tg.reshape(-1)).loss
        )
        fs = [tuple(t.detach() for t in s) for s in fs]
        bs = [tuple(t.detach() for t in s) for s in bs]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step == warmup:
            start = time.perf_counter()
        elif start is not None:
            tokens += n
            if time.perf_counter() - start >= seconds:
                break
    return {"tokens_per_s": tokens / (time.perf_counter() - start), "final_loss": loss.item(), "steps": step}


def dlnlp_run(seconds: float, warmup: int, workdir: Path) -> dict:
    out = workdir / "tp"
    cmd = [
        *DLNLP,
        "elmo",
        "train",
        str(BROWN / "train.txt"),
        "--out",
        str(out),
        "--force",
        "--quiet",
        *model_args(),
        "--max-time",
        str(seconds + 30),
        "--eval-interval",
        "0",
        "--log-interval",
        str(warmup),
        "--val-fraction",
        "0.01",
    ]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    logs = [r for r in rows if "tokens_per_s" in r]
    # the first interval holds the start (and its warmup steps); time the steps after it
    first, last = logs[0], logs[-1]
    rate = (last["tokens"] - first["tokens"]) / (last["elapsed"] - first["elapsed"])
    return {"tokens_per_s": rate, "final_loss": last["loss"], "steps": last["step"]}


def throughput(args: argparse.Namespace) -> dict:
    hand, ours = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.reps):
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "_hand",
                    "--seconds",
                    str(args.seconds),
                    "--warmup",
                    str(args.warmup),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            hand.append(json.loads(proc.stdout)["tokens_per_s"])
            ours.append(dlnlp_run(args.seconds, args.warmup, Path(tmp))["tokens_per_s"])
    ratios = [o / h for o, h in zip(ours, hand, strict=True)]
    return {
        "benchmark": "elmo throughput",
        "model": MODEL,
        "filters": FILTERS,
        "hand_words_per_s": hand,
        "dlnlp_words_per_s": ours,
        "hand_median": statistics.median(hand),
        "dlnlp_median": statistics.median(ours),
        "ratio_median": statistics.median(ratios),
        "ratios": ratios,
        "target_ratio": 0.95,
        "seconds": args.seconds,
        "reps": args.reps,
    }


# -- Brown perplexity ------------------------------------------------------------------------------------


def _json(cmd: list[str]) -> dict:
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def brown(args: argparse.Namespace) -> dict:
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="elmo-brown-"))
    model = work / "elmo"
    cmd = [
        *DLNLP,
        "elmo",
        "train",
        str(BROWN / "train.txt"),
        "--val",
        str(BROWN / "valid.txt"),
        "--out",
        str(model),
        "--force",
        *model_args(),
        "--max-time",
        str(args.budget),
        "--schedule",
        args.schedule,
        "--eval-interval",
        str(args.eval_interval),
        "--eval-batches",
        "20",
        "--log-interval",
        "100",
        "--json",
    ]
    start = time.perf_counter()
    train = _json(cmd)
    train_s = time.perf_counter() - start
    evaluated = _json(
        [*DLNLP, "elmo", "eval", str(model), str(BROWN / "valid.txt"), "--json", "--device", "cpu"]
    )
    result = {
        "benchmark": "elmo brown",
        "command": " ".join(["dlnlp", *cmd[3:]]),
        "budget_s": args.budget,
        "train_wall_s": round(train_s, 1),
        "train": train,
        "eval": evaluated,
        "target": TARGET,
    }
    if not args.skip_ngram:
        ngram = work / "ngram5"
        subprocess.run(
            [
                *DLNLP,
                "ngram",
                "train",
                str(BROWN / "train.txt"),
                "--order",
                "5",
                "--min-count",
                "3",
                "--out",
                str(ngram),
                "--force",
                "--quiet",
            ],
            check=True,
        )
        result["ngram"] = _json([*DLNLP, "ngram", "eval", str(ngram), str(BROWN / "valid.txt"), "--json"])
    result["met"] = max(evaluated["forward_perplexity"], evaluated["backward_perplexity"]) <= TARGET
    return result


# -- MR: ELMo features against skip-gram vectors ---------------------------------------------------------


def _read_mr(split: str) -> tuple[list[list[str]], list[int]]:
    texts, labels = [], []
    with open(MR / f"{split}.tsv", encoding="utf-8") as handle:
        next(handle)
        for line in handle:
            text, _, label = line.rstrip("\n").rpartition("\t")
            texts.append(CORPUS_TOKEN.findall(text.lower()))
            labels.append(int(label))
    return texts, labels


def _fit_classifier(
    train_x, train_y, dev_x, dev_y, *, mix_layers: int = 0, extra=None, l2_grid=None, seed: int = 0
) -> dict:
    """Logistic regression on standardized sentence features, fit full-batch by L-BFGS (SentEval's
    protocol: the L2 strength picked on a held-out 10% of train, then refit on all of train), as
    :mod:`dlnlp.transfer.logreg`; a plain ``[N, D]`` is :func:`~dlnlp.transfer.logreg.fit_logistic` itself.

    ``train_x`` is ``[N, D]``, or ``[N, L, D]`` pooled per layer with ``mix_layers = L``: then a
    ``ScalarMix`` (Peters et al. eq. 1) is learned jointly with the linear layer, from the same pieces;
    pooling is linear for the mean, so mixing the pooled layers equals pooling the mixed states.
    ``extra = (train, dev)`` features ``[N, E]`` are concatenated after the mix: the paper's
    ``[x_k; ELMo_k]``."""
    import torch
    from torch import nn

    from dlnlp.kernels.pooling import ScalarMix
    from dlnlp.transfer.logreg import L2_GRID, Standardizer, choose_l2, fit_logistic, lbfgs, penalized_loss

    l2_grid = L2_GRID if l2_grid is None else l2_grid
    train_y, dev_y = torch.as_tensor(train_y), torch.as_tensor(dev_y)
    if not mix_layers and extra is None:
        fit = fit_logistic(train_x, train_y, 2, grid=l2_grid, seed=seed)
        with torch.no_grad():
            dev_accuracy = float((fit.linear(dev_x).argmax(-1) == dev_y).float().mean())
        return {"dev_accuracy": dev_accuracy, "l2": fit.l2,
                "held_out_accuracy": {str(k): round(v, 4) for k, v in fit.held_out.items()}}

    def standardized(train, dev):
        standardize = Standardizer.fit(train)
        return standardize(train), standardize(dev)

    train_x, dev_x = standardized(train_x, dev_x)
    train_e, dev_e = standardized(*extra) if extra is not None else (None, None)

    def fit(x, e, y, l2):
        torch.manual_seed(seed)
        mix = ScalarMix(mix_layers) if mix_layers else None
        linear = nn.Linear(x.shape[-1] + (e.shape[-1] if e is not None else 0), 2)
        params = list(linear.parameters()) + (list(mix.parameters()) if mix else [])

        def forward(inputs, inputs_extra):
            features = mix(list(inputs.unbind(1))) if mix else inputs
            return linear(features if inputs_extra is None else torch.cat([inputs_extra, features], -1))

        lbfgs(params, lambda: penalized_loss(forward(x, e), y, linear.weight, l2))
        return forward, mix

    def accuracy(forward, x, e, y):
        with torch.no_grad():
            return float((forward(x, e).argmax(-1) == y).float().mean())

    def rows(e, index):
        return e[index] if e is not None else None

    best_l2, held_out = choose_l2(
        lambda part, held, l2: accuracy(fit(train_x[part], rows(train_e, part), train_y[part], l2)[0],
                                        train_x[held], rows(train_e, held), train_y[held]),
        len(train_y), l2_grid, seed,
    )
    forward, mix = fit(train_x, train_e, train_y, best_l2)
    result = {"dev_accuracy": accuracy(forward, dev_x, dev_e, dev_y), "l2": best_l2,
              "held_out_accuracy": {str(k): round(v, 4) for k, v in held_out.items()}}
    if mix is not None:
        result["mix_weights"] = [round(float(w), 4) for w in mix.mix_weights().detach()]
        result["gamma"] = round(float(mix.gamma.detach()), 4)
    return result


def mr(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    from dlnlp.kernels.pooling import pool
    from dlnlp.recipes.elmo import load_encoder

    torch.set_num_threads(max(1, torch.get_num_threads()))
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="elmo-mr-"))
    elmo_dir, w2v = work / "elmo", work / "w2v.txt"
    if not (elmo_dir / "model.safetensors").is_file() or args.retrain:
        subprocess.run(
            [
                *DLNLP,
                "elmo",
                "train",
                str(EMBED_TRAIN),
                "--out",
                str(elmo_dir),
                "--force",
                "--schedule",
                args.schedule,
                *model_args(),
                "--max-time",
                str(args.budget),
                "--eval-interval",
                "0",
                "--val-fraction",
                "0.02",
                "--quiet",
            ],
            check=True,
        )
    if not w2v.is_file() or args.retrain:
        subprocess.run(
            [
                *DLNLP,
                "word2vec",
                "train",
                str(EMBED_TRAIN),
                "--out",
                str(w2v),
                "--force",
                "--dim",
                str(args.w2v_dim),
                "--epochs",
                "5",
                "--min-count",
                "3",
                "--quiet",
            ],
            check=True,
        )
    data = {split: _read_mr(split) for split in ("train", "dev")}

    # ELMo: every hidden state of every word, mean- and max-pooled per layer: [N, L+1, D] each, each
    # sentence read from zero state and from the warmed-up state (ElmoEncoder.warm_up: the mean state
    # at a sentence boundary of the biLM's own training text, its first --warm-lines lines)
    encoder = load_encoder(elmo_dir, "cpu")
    with open(EMBED_TRAIN, encoding="utf-8") as handle:
        warm_text = [line.split() for _, line in zip(range(args.warm_lines), handle, strict=False)]
    pooled_layers: dict[str, dict[str, dict[str, torch.Tensor]]] = {}
    for start in STARTS:
        if start == "warm":
            encoder.warm_up(warm_text)
        pooled_layers[start] = {}
        with torch.no_grad():
            for split, (texts, _) in data.items():
                means, maxes = [], []
                for i in range(0, len(texts), 64):
                    chars, mask = encoder.batch(texts[i : i + 64])
                    stacked = torch.cat(encoder(chars, mask).hidden_states, -1)  # [B, T, (L+1) * D]
                    words = encoder.words_mask(mask)
                    means.append(pool(stacked, words, "mean").unflatten(-1, (encoder.num_hidden, -1)))
                    maxes.append(pool(stacked, words, "max").unflatten(-1, (encoder.num_hidden, -1)))
                pooled_layers[start][split] = {"mean": torch.cat(means), "max": torch.cat(maxes)}

    results = {}
    for start, suffix in STARTS.items():
        for how in ("mean", "max"):
            results[f"elmo_{how}{suffix}"] = _fit_classifier(
                pooled_layers[start]["train"][how], data["train"][1], pooled_layers[start]["dev"][how],
                data["dev"][1], mix_layers=encoder.num_hidden,
            )
        # every layer's mean side by side instead of mixed (SentEval's ELMo rows): the linear layer
        # weighs each layer's every dimension, where the mix has one weight a layer
        results[f"elmo_concat_mean{suffix}"] = _fit_classifier(
            pooled_layers[start]["train"]["mean"].flatten(1), data["train"][1],
            pooled_layers[start]["dev"]["mean"].flatten(1), data["dev"][1],
        )

    # skip-gram: mean of the in-vocabulary word vectors (zeros for a sentence with none)
    vectors: dict[str, np.ndarray] = {}
    with open(w2v, encoding="utf-8") as handle:
        next(handle)
        for line in handle:
            parts = line.rstrip().split(" ")
            vectors[parts[0]] = np.asarray(parts[1:], dtype=np.float32)
    pooled = {}
    for split, (texts, _) in data.items():
        rows = np.zeros((len(texts), args.w2v_dim), dtype=np.float32)
        for i, words in enumerate(texts):
            found = [vectors[w] for w in words if w in vectors]
            if found:
                rows[i] = np.mean(found, 0)
        pooled[split] = torch.from_numpy(rows)
    results["skipgram_mean"] = _fit_classifier(pooled["train"], data["train"][1], pooled["dev"], data["dev"][1])
    for start, suffix in STARTS.items():
        results[f"skipgram_plus_elmo_mean{suffix}"] = _fit_classifier(
            pooled_layers[start]["train"]["mean"], data["train"][1], pooled_layers[start]["dev"]["mean"],
            data["dev"][1], mix_layers=encoder.num_hidden, extra=(pooled["train"], pooled["dev"]),
        )
    best_elmo = max(results[f"elmo_{how}{suffix}"]["dev_accuracy"] for how in ("mean", "max")
                    for suffix in STARTS.values())
    margin = best_elmo - results["skipgram_mean"]["dev_accuracy"]
    return {
        "benchmark": "elmo mr",
        "budget_s": args.budget,
        "work": str(work),
        "results": results,
        "margin_points": round(100 * margin, 2),
        "margin_points_elmo_added": round(
            100 * (max(results[f"skipgram_plus_elmo_mean{suffix}"]["dev_accuracy"] for suffix in STARTS.values())
                   - results["skipgram_mean"]["dev_accuracy"]), 2
        ),
        "margin_points_concat": round(
            100 * (max(results[f"elmo_concat_mean{suffix}"]["dev_accuracy"] for suffix in STARTS.values())
                   - results["skipgram_mean"]["dev_accuracy"]), 2
        ),
        "target_points": 3.0,
        "met": margin >= 0.03,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    tp = sub.add_parser("throughput")
    tp.add_argument("--seconds", type=float, default=60)
    tp.add_argument("--reps", type=int, default=3)
    tp.add_argument("--warmup", type=int, default=10)
    hand = sub.add_parser("_hand")
    hand.add_argument("--seconds", type=float, default=60)
    hand.add_argument("--warmup", type=int, default=10)
    br = sub.add_parser("brown")
    br.add_argument("--budget", type=float, default=1800)
    br.add_argument("--schedule", default="cosine")
    br.add_argument("--eval-interval", type=int, default=1000)
    br.add_argument("--out", default=None)
    br.add_argument("--skip-ngram", action="store_true")
    mrp = sub.add_parser("mr")
    mrp.add_argument("--budget", type=float, default=1200)
    mrp.add_argument("--schedule", default="cosine", help="the biLM's learning-rate schedule (as the Brown section)")
    mrp.add_argument("--w2v-dim", type=int, default=300)
    mrp.add_argument("--retrain", action="store_true")
    mrp.add_argument("--out", default=None)
    mrp.add_argument("--warm-lines", type=int, default=4096,
                     help="lines of the biLM's training text whose mean boundary state starts the warm rows")
    for p in (br, mrp):
        p.add_argument("--extra", default="", help='more `dlnlp elmo train` options, e.g. "--layers 2"')
    args = parser.parse_args()
    EXTRA.extend(getattr(args, "extra", "").split())
    if args.mode == "_hand":
        print(json.dumps(hand_loop(args.seconds, args.warmup)))
        return
    result = {"throughput": throughput, "brown": brown, "mr": mr}[args.mode](args)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
