"""GPT training and decoding: dlnlp against transformers' GPT2LMHeadModel, side by side.

Sections (all by default; ``--section`` picks one):

* ``train``: the Tiny Shakespeare character-level configuration of issue 7 (4 layers, 4 heads,
  128 dims, block 64, batch 12, AdamW lr 1e-3 with 100 warmup steps and cosine decay to 1e-4,
  betas (0.9, 0.99), weight decay 0.1, clipping 1.0, dropout 0; last 10% of the text held out).
  dlnlp's model is its default GPT (exact GELU, as nanoGPT's); transformers' is GPT-2 as shipped
  (``gelu_new``, the tanh approximation).
  Both models train in one loop with the same batches, optimizer and schedule, alternating chunks of
  ``--chunk`` steps; tokens/s is the median over chunks (the first chunk of each is warm-up and
  dropped). Then the validation loss of each over the whole held-out text in 64-token windows.
* ``trainer``: the same configuration through ``dlnlp gpt train``'s recipe (the shared Trainer):
  final whole-validation loss and tokens/s (the Done-when run).
* ``decode``: a GPT-2 of the same size (4x4x128, 1024 positions, random weights, vocabulary 66)
  loaded into both libraries; new tokens/s of greedy and 4-beam search (length penalty 1.0,
  ``early_stopping=True`` in HF, the same convention as dlnlp) for one prompt of 16 tokens and
  64 new tokens, alternating, medians of ``--reps``; and the cost per new token with a prompt of 64
  versus 512 tokens (time for 65 new tokens minus time for 1, divided by 64: prefill excluded).

Run: ``flock -x /tmp/cpu.lock python bench/gpt.py`` (prints one JSON object).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

CONFIG = {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64}
BATCH = 12
LR, MIN_LR, WARMUP = 1e-3, 1e-4, 100


def load_data():
    from dlnlp.tokenization.char import CharVocab

    text = (SHARED / "corpora" / "tinyshakespeare.txt").read_text(encoding="utf-8")
    vocab = CharVocab.build(text)
    ids = torch.tensor(vocab.encode(text), dtype=torch.long)
    cut = int(len(ids) * 0.9)
    return ids[:cut], ids[cut:], vocab.vocab_size


def make_models(vocab_size: int, block_size: int):
    import transformers

    from dlnlp.models.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    ours = GPT(GPTConfig(vocab_size=vocab_size, **{**CONFIG, "block_size": block_size}))
    torch.manual_seed(0)
    hf_config = transformers.GPT2Config(vocab_size=vocab_size, n_positions=block_size, n_embd=CONFIG["n_embd"],
                                        n_layer=CONFIG["n_layer"], n_head=CONFIG["n_head"], resid_pdrop=0.0,
                                        embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
                                        pad_token_id=0)
    hf = transformers.GPT2LMHeadModel(hf_config)
    return ours, hf


def optimizer(model):
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=LR, betas=(0.9, 0.99))


def lr_at(step: int, total: int) -> float:
    """nanoGPT's get_lr: linear warmup, cosine decay to MIN_LR."""
    if step < WARMUP:
        return LR * (step + 1) / (WARMUP + 1)
    ratio = min(1.0, (step - WARMUP) / max(1, total - WARMUP))
    return MIN_LR + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (LR - MIN_LR)


def batches(train: torch.Tensor, steps: int, seed: int = 1337):
    g = torch.Generator().manual_seed(seed)
    t = CONFIG["block_size"]
    for _ in range(steps):
        ix = torch.randint(len(train) - t - 1, (BATCH,), generator=g)
        chunk = torch.stack([train[i:i + t + 1] for i in ix.tolist()])
        yield chunk[:, :-1], chunk[:, 1:]


@torch.no_grad()
def whole_val_loss(forward, val: torch.Tensor, block: int = 64, batch: int = 64) -> float:
    total, count = 0.0, 0
    starts = list(range(0, len(val) - 1, block))
    for i in range(0, len(starts), batch):
        group = [s for s in starts[i:i + batch] if s + block + 1 <= len(val)]
        if group:
            w = torch.stack([val[s:s + block + 1] for s in group])
            logits = forward(w[:, :-1])
            total += F.cross_entropy(logits.reshape(-1, logits.size(-1)), w[:, 1:].reshape(-1), reduction="sum").item()
            count += w[:, 1:].numel()
        for s in [s for s in starts[i:i + batch] if s + block + 1 > len(val)]:
            w = val[s:][None]
            logits = forward(w[:, :-1])
            total += F.cross_entropy(logits[0], w[0, 1:], reduction="sum").item()
            count += w.shape[1] - 1
    return total / count


def bench_train(steps: int, chunk: int) -> dict:
    train, val, vocab = load_data()
    ours, hf = make_models(vocab, CONFIG["block_size"])

    def hf_loss(model, x, y):
        logits = model(input_ids=x).logits
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))

    runs = {
        "dlnlp": {"model": ours, "opt": optimizer(ours), "step": lambda m, x, y: m(x, y)[1]},
        "transformers": {"model": hf, "opt": optimizer(hf), "step": hf_loss},
    }
    for r in runs.values():
        r["data"] = batches(train, steps)  # the same seed: the same batches for both
        r["rates"] = []
        r["model"].train()
    done = 0
    order = ["dlnlp", "transformers"]
    while done < steps:
        n = min(chunk, steps - done)
        for name in order:
            r = runs[name]
            model, opt = r["model"], r["opt"]
            start = time.perf_counter()
            for i in range(n):
                for group in opt.param_groups:
                    group["lr"] = lr_at(done + i, steps)
                x, y = next(r["data"])
                loss = r["step"](model, x, y)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                opt.zero_grad(set_to_none=True)
            r["rates"].append(n * BATCH * CONFIG["block_size"] / (time.perf_counter() - start))
            r["last_loss"] = loss.item()
        order.reverse()  # alternate who goes first
        done += n
    out = {"steps": steps, "chunk": chunk}
    for name, r in runs.items():
        r["model"].eval()
        forward = (lambda m: (lambda x: m(x)[0]))(r["model"]) if name == "dlnlp" else \
            (lambda m: (lambda x: m(input_ids=x).logits))(r["model"])
        rates = r["rates"][1:] or r["rates"]
        out[name] = {"tokens_per_s": round(statistics.median(rates), 1), "train_loss": round(r["last_loss"], 4),
                     "val_loss_whole": round(whole_val_loss(forward, val), 4)}
    out["speed_ratio"] = round(out["dlnlp"]["tokens_per_s"] / out["transformers"]["tokens_per_s"], 3)
    return out


def bench_trainer(steps: int) -> dict:
    from dlnlp.io.corpus import CorpusOptions
    from dlnlp.recipes.gpt import start_gpt_training
    from dlnlp.training import TrainConfig

    corpus = str(SHARED / "corpora" / "tinyshakespeare.txt")
    train_config = TrainConfig(optimizer="adamw", lr=LR, weight_decay=0.1, betas=(0.9, 0.99), schedule="cosine",
                               warmup_steps=WARMUP, min_lr_ratio=MIN_LR / LR, clip=1.0, device="cpu",
                               precision="fp32", max_steps=steps, eval_interval=0, log_interval=50, seed=0,
                               quiet=True)
    with tempfile.TemporaryDirectory() as tmp:
        result = start_gpt_training([corpus], Path(tmp) / "run", {**CONFIG, "dropout": 0.0}, train_config,
                                    batch_size=BATCH, options=CorpusOptions())
    return {"steps": result["steps"], "val_loss_whole": round(result["val_loss"], 4),
            "tokens_per_s": result["tokens_per_s"], "elapsed_s": result["elapsed_s"]}


def decode_models(block_size: int = 1024, vocab: int = 66):
    from dlnlp.models.gpt import GPT, GPTConfig
    from dlnlp.models.gpt_hf import hf_to_dlnlp_state

    _, hf = make_models(vocab, block_size)
    hf.eval()
    hf.generation_config.eos_token_id = None
    hf.generation_config.pad_token_id = 0
    ours = GPT(GPTConfig(vocab_size=vocab, **{**CONFIG, "block_size": block_size}))
    ours.load_saved_state(hf_to_dlnlp_state(hf.state_dict(), CONFIG["n_layer"], True))
    return ours.eval(), hf


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_decode(reps: int) -> dict:
    from dlnlp.decoding import DecodeConfig, GPTNextToken, generate

    ours, hf = decode_models()
    lm = GPTNextToken(ours)
    g = torch.Generator().manual_seed(5)
    prompt = torch.randint(1, 66, (1, 512), generator=g)

    def run_ours(strategy: str, beams: int, plen: int, new: int):
        config = DecodeConfig(strategy=strategy, num_beams=beams, max_new_tokens=new, length_penalty=1.0)
        return generate(lm, [prompt[0, :plen].tolist()], config)[0][0].tokens

    def run_hf(strategy: str, beams: int, plen: int, new: int):
        with torch.no_grad():
            out = hf.generate(prompt[:, :plen], do_sample=False, num_beams=beams, max_new_tokens=new,
                              min_new_tokens=new, length_penalty=1.0, early_stopping=True,
                              attention_mask=torch.ones(1, plen, dtype=torch.long))
        return out[0, plen:].tolist()

    results: dict = {}
    for name, beams in (("greedy", 1), ("beam4", 4)):
        strategy = "greedy" if beams == 1 else "beam"
        same = run_ours(strategy, beams, 16, 64) == run_hf(strategy, beams, 16, 64)
        times = {"dlnlp": [], "transformers": []}
        for _ in range(reps):
            times["dlnlp"].append(_time(lambda s=strategy, b=beams: run_ours(s, b, 16, 64)))
            times["transformers"].append(_time(lambda s=strategy, b=beams: run_hf(s, b, 16, 64)))
        rate = {k: 64 / statistics.median(v) for k, v in times.items()}
        results[name] = {"same_tokens": same, "dlnlp_new_tokens_per_s": round(rate["dlnlp"], 1),
                         "transformers_new_tokens_per_s": round(rate["transformers"], 1),
                         "speed_ratio": round(rate["dlnlp"] / rate["transformers"], 3)}
    for name, beams in (("greedy", 1), ("beam4", 4)):
        strategy = "greedy" if beams == 1 else "beam"
        per_token = {}
        for plen in (64, 512):
            for lib, fn in (("dlnlp", run_ours), ("transformers", run_hf)):
                full, first = [], []
                for _ in range(reps):
                    full.append(_time(lambda f=fn, p=plen, s=strategy, b=beams: f(s, b, p, 65)))
                    first.append(_time(lambda f=fn, p=plen, s=strategy, b=beams: f(s, b, p, 1)))
                per_token[f"{lib}_ms_per_token_ctx{plen}"] = round(
                    1000 * (statistics.median(full) - statistics.median(first)) / 64, 3)
        for lib in ("dlnlp", "transformers"):
            per_token[f"{lib}_ratio_512_vs_64"] = round(
                per_token[f"{lib}_ms_per_token_ctx512"] / per_token[f"{lib}_ms_per_token_ctx64"], 3)
        results[f"context_cost_{name}"] = per_token
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--section", choices=["all", "train", "trainer", "decode"], default="all")
    parser.add_argument("--steps", type=int, default=2000, help="training iterations (issue 7: 2000)")
    parser.add_argument("--chunk", type=int, default=100, help="training steps per alternation")
    parser.add_argument("--reps", type=int, default=5, help="decoding repetitions per library")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers

    result = {"torch": torch.__version__, "transformers": transformers.__version__,
              "threads": torch.get_num_threads()}
    if args.section in ("all", "train"):
        result["train"] = bench_train(args.steps, args.chunk)
        print(json.dumps({"train": result["train"]}), file=sys.stderr, flush=True)
    if args.section in ("all", "trainer"):
        result["trainer"] = bench_trainer(args.steps)
        print(json.dumps({"trainer": result["trainer"]}), file=sys.stderr, flush=True)
    if args.section in ("all", "decode"):
        result["decode"] = bench_decode(args.reps)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
