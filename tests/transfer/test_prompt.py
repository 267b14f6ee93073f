"""Prompts on frozen backbones: soft, deep and input-dependent prompts, prefix folding, cloze patterns,
and GPT soft prompts in training and decoding."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from dlnlp.decoding import DecodeConfig
from dlnlp.decoding.interface import FullContextNextToken, GPTNextToken
from dlnlp.decoding.search import generate
from dlnlp.io.modeldir import load_weights
from dlnlp.kernels.attention import MultiHeadAttention
from dlnlp.models.gpt import GPT, GPTConfig
from dlnlp.recipes.finetune import FinetuneSpec, evaluate, finetune, new_prompt
from dlnlp.training.config import TrainConfig
from dlnlp.transfer.backbone import load_backbone
from dlnlp.transfer.data import collate, encode_examples
from dlnlp.transfer.model import FineTuned, HeadConfig, apply_strategy, loss_for
from dlnlp.transfer.predict import logits_in_order
from dlnlp.transfer.prompt import DeepPrompt, PromptConfig
from dlnlp.transfer.saved import load_finetuned
from tests.conftest import run_main
from tests.models.test_bert import make_tiny_bert_dir
from tests.transfer.test_finetune import labeled_lines

SPECS = {
    "prompt": dict(strategy="prompt", prompt_length=3, prompt_init="a good film"),
    "deep-prompt": dict(strategy="deep-prompt", prompt_length=2, prefix_projection=8),
    "input-prompt": dict(strategy="input-prompt", prompt_length=2, prompt_hidden=4, prompt_init="vocab"),
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_bert_dir(tmp_path_factory.mktemp("pt") / "bert", max_len=32)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    (root / "train.tsv").write_text("text\tlabel\n" + "\n".join(labeled_lines(24)) + "\n")
    (root / "dev.tsv").write_text("text\tlabel\n" + "\n".join(labeled_lines(10, seed=1)) + "\n")
    return root


def config(**changes) -> TrainConfig:
    settings = dict(lr=3e-2, epochs=2, device="cpu", quiet=True, eval_interval=0, extra={"batch_size": 8})
    return TrainConfig(**{**settings, **changes})


def prompted(tiny, name: str, seed: int = 0) -> FineTuned:
    backbone = load_backbone(tiny)
    spec = FinetuneSpec(**SPECS[name])
    torch.manual_seed(seed)
    model = FineTuned(backbone, HeadConfig(num_labels=2, dim=backbone.dim, pool="mean"),
                      prompt=new_prompt(backbone, spec.prompt_config(backbone), seed))
    apply_strategy(model, spec.strategy)
    return model


@pytest.mark.parametrize("name", list(SPECS))
def test_prompt_training_keeps_the_backbone_and_saves_only_what_trained(tiny, data, tmp_path, name):
    before = load_weights(tiny)
    summary = finetune(tiny, [str(data / "train.tsv")], tmp_path / "out", FinetuneSpec(**SPECS[name]), config(),
                       val=data / "dev.tsv")
    after = load_weights(tiny)
    assert all(torch.equal(before[k], after[k]) for k in before)
    saved = load_weights(tmp_path / "out")
    assert all(k.startswith(("prompt.", "head.")) for k in saved)
    if name == "deep-prompt":  # the MLP was folded away: only the prefix it computes is kept
        assert set(saved) == {"prompt.prefix", "head.classifier.weight", "head.classifier.bias"}
        assert saved["prompt.prefix"].shape == (2, 2, 2, 32)  # layers, key/value, length, width
        assert summary["trainable_parameters"] > saved["prompt.prefix"].numel() + 66
    model, _ = load_finetuned(tmp_path / "out")
    reference = load_backbone(tiny).state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in model.backbone.state_dict().items())
    # what was saved predicts as the trained model did: evaluate's accuracy is the training's best
    assert evaluate(tmp_path / "out", [str(data / "dev.tsv")], device="cpu")["accuracy"] == summary["best"]["accuracy"]


@pytest.mark.parametrize("name", list(SPECS))
def test_gradients_reach_only_the_prompt_and_the_head(tiny, name):
    model = prompted(tiny, name).train()
    texts = [line.split("\t")[0] for line in labeled_lines(5)]
    rows = model.backbone.encode(texts, None, 16)
    batch = collate(rows, [0, 1, 0, 1, 0], model.backbone.pad_id, model.backbone.segments)
    y = batch.pop("labels")
    loss_for("classify", model(**batch), y).backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    grads = [p.grad for p in model.prompt.parameters()]
    assert grads and all(g is not None for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)


def prompted_at(tiny, position: str) -> FineTuned:
    backbone = load_backbone(tiny)
    spec = FinetuneSpec(**SPECS["prompt"], prompt_position=position)
    model = FineTuned(backbone, HeadConfig(num_labels=2, dim=backbone.dim, pool="cls"),
                      prompt=new_prompt(backbone, spec.prompt_config(backbone), 0))
    apply_strategy(model, spec.strategy)
    return model.eval()


# the model's input for each placement: [CLS] P_1..P_K text [SEP], or PEFT's P_1..P_K [CLS] text [SEP]
LAYOUTS = {"after-cls": lambda emb, p: torch.cat([emb[:, :1], p[None], emb[:, 1:]], 1),
           "first": lambda emb, p: torch.cat([p[None], emb], 1)}


@pytest.mark.parametrize("position", list(LAYOUTS))
def test_a_soft_prompt_is_dropped_from_the_states_but_one_vector_in_cls_place(tiny, position):
    model = prompted_at(tiny, position)
    backbone, p = model.backbone, model.prompt.weight
    ids = torch.tensor([backbone.encode(["a good film ."])[0].ids])
    feats = backbone(ids, torch.zeros_like(ids), torch.ones_like(ids), prompt=model.prompt)
    manual = backbone.model.features(ids, inputs_embeds=LAYOUTS[position](backbone.model.tok_emb(ids), p))
    k = p.shape[0]
    hidden, expected = feats.last_hidden_state, manual.last_hidden_state
    assert hidden.shape == (1, ids.shape[1], backbone.dim)
    # position 0, what the pooler and --pool cls read: [CLS]'s state after-cls, P_1's state first
    torch.testing.assert_close(hidden[:, 0], expected[:, 0])
    torch.testing.assert_close(hidden[:, 1:], expected[:, 1 + k:])
    # the text's room shrinks by the prompt's vectors
    assert len(backbone.encode(["a " * 40])[0].ids) == backbone.max_len - k


def test_the_two_placements_give_different_logits(tiny):
    first, after = prompted_at(tiny, "first"), prompted_at(tiny, "after-cls")
    ids = torch.tensor([first.backbone.encode(["a good film ."])[0].ids])
    with torch.no_grad():
        after.prompt.weight.copy_(first.prompt.weight)
        assert not torch.allclose(first(ids, torch.zeros_like(ids), torch.ones_like(ids)),
                                  after(ids, torch.zeros_like(ids), torch.ones_like(ids)))


def test_the_prompt_position_through_the_command(tiny, data, tmp_path):
    base = ["finetune", tiny, data / "train.tsv", "--strategy", "prompt", "--prompt-length", "2", "--epochs", "1",
            "--device", "cpu", "-q"]
    assert run_main(*base, "--out", tmp_path / "first").returncode == 0
    assert run_main(*base, "--prompt-position", "after-cls", "--out", tmp_path / "after").returncode == 0
    saved = {name: json.loads((tmp_path / name / "config.json").read_text())["prompt"]["position"]
             for name in ("first", "after")}
    assert saved == {"first": "first", "after": "after-cls"}
    bad = run_main(*base, "--prompt-position", "last", "--out", tmp_path / "bad")
    assert bad.returncode in (1, 2) and "--prompt-position must be one of first, after-cls" in bad.stderr
    assert not (tmp_path / "bad").exists()


def test_a_prompt_saved_before_the_position_option_reads_after_cls():
    saved = PromptConfig(strategy="prompt", length=2, dim=8).to_dict()
    del saved["position"]
    assert PromptConfig.from_dict(saved).position == "after-cls"
    with pytest.raises(Exception, match="--prompt-position"):
        PromptConfig(strategy="prompt", length=2, dim=8, position="last").validate()


def test_prefix_attention_is_attention_over_the_concatenated_keys():
    torch.manual_seed(0)
    attn = MultiHeadAttention(8, 2).eval()
    x, pk, pv = torch.randn(2, 5, 8), torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    out = attn(x, key_padding_mask=mask, prefix=(pk, pv))
    q, k, v = attn.qkv(x).view(2, 5, 3, 2, 4).permute(2, 0, 3, 1, 4)
    k, v = torch.cat([pk.expand(2, -1, -1, -1), k], 2), torch.cat([pv.expand(2, -1, -1, -1), v], 2)
    scores = q @ k.transpose(-1, -2) / 2.0
    scores = scores.masked_fill(~torch.cat([torch.ones(2, 3, dtype=torch.bool), mask], 1)[:, None, None], -1e9)
    expected = attn.proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 5, 8))
    torch.testing.assert_close(out, expected)


def test_a_deep_prompt_of_length_zero_is_the_plain_model(tiny):
    backbone = load_backbone(tiny).eval()
    c = backbone.model.config
    prompt = DeepPrompt(PromptConfig(strategy="deep-prompt", length=0, dim=c.dim, layers=c.n_layer, heads=c.n_head))
    rows = backbone.encode([line.split("\t")[0] for line in labeled_lines(4)])
    batch = collate(rows, None, backbone.pad_id, backbone.segments)
    plain = backbone(**batch)
    with_prompt = backbone(**batch, prompt=prompt)
    for a, b in zip(plain.hidden_states, with_prompt.hidden_states, strict=True):
        assert torch.equal(a, b)
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=13, block_size=16, n_layer=2, n_head=2, n_embd=16)).eval()
    ids = torch.randint(13, (2, 7))
    empty = DeepPrompt(PromptConfig(strategy="deep-prompt", length=0, dim=16, layers=2, heads=2))
    assert torch.equal(gpt(ids)[0], gpt(ids, prefix=empty(ids, None, gpt.wte)[1])[0])


def test_folding_the_prefix_projection_changes_no_output(tiny):
    model = prompted(tiny, "deep-prompt").eval()
    c = model.prompt.config
    folded = DeepPrompt(PromptConfig(**{**c.to_dict(), "projection": 0}))
    folded.load_state_dict({k[len("prompt."):]: v for k, v in model.prompt.folded_state("prompt.").items()})
    rows = model.backbone.encode([line.split("\t")[0] for line in labeled_lines(6)])
    batch = collate(rows, None, model.backbone.pad_id, model.backbone.segments)
    with torch.no_grad():
        before = model(**batch)
        model.prompt = folded
        after = model(**batch)
    assert torch.equal(before, after)


@torch.no_grad()  # as decoding runs
def test_gpt_prefix_with_a_cache_continues_the_full_sequence():
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=13, block_size=16, n_layer=2, n_head=2, n_embd=16)).eval()
    prompt = DeepPrompt(PromptConfig(strategy="deep-prompt", length=3, dim=16, layers=2, heads=2))
    prefix = prompt(None, None, gpt.wte)[1]
    ids = torch.randint(13, (2, 9))
    full, _ = gpt(ids, prefix=prefix)
    cache = gpt.new_cache()
    first, _ = gpt(ids[:, :5], prefix=prefix, cache=cache)
    steps = [gpt(ids[:, i:i + 1], prefix=prefix, cache=cache)[0] for i in range(5, 9)]
    torch.testing.assert_close(torch.cat([first, *steps], 1), full)


@pytest.mark.parametrize("strategy", ["greedy", "beam", "sample"])
def test_generation_with_a_soft_prompt_is_generation_from_those_input_embeddings(strategy):
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=13, block_size=24, n_layer=2, n_head=2, n_embd=16)).eval()
    soft = torch.randn(3, 16)

    def next_logits(ids: torch.Tensor) -> torch.Tensor:
        embeds = torch.cat([soft[None], gpt.wte(ids)], 1)
        return gpt(None, inputs_embeds=embeds)[0][:, -1]

    prompts = [[1, 2, 3, 4], [5, 6]]  # different lengths: left padding under the soft prompt
    config = DecodeConfig(strategy=strategy, max_new_tokens=8, num_beams=3, num_return=2 if strategy == "beam" else 1)
    cached = generate(GPTNextToken(gpt, soft_prompt=soft), prompts, config, generator=torch.Generator().manual_seed(1))
    reference = generate(FullContextNextToken(next_logits, 13), prompts, config,
                         generator=torch.Generator().manual_seed(1))
    for a, b in zip(cached, reference, strict=True):
        assert [h.tokens for h in a] == [h.tokens for h in b]
        assert [h.logprob for h in a] == pytest.approx([h.logprob for h in b], abs=1e-4)


def test_gpt_prompt_tune_and_generate_with_the_soft_prompt(tmp_path):
    source = tmp_path / "source.txt"
    source.write_text("".join(f"to be or not to be, line {i}\n" for i in range(100)))
    target = tmp_path / "target.txt"
    target.write_text("".join("be not, be not to line\n" for _ in range(60)))
    common = ["--batch-size", "8", "-q", "--device", "cpu"]
    tiny = ["--layers", "1", "--heads", "2", "--dim", "16", "--block-size", "16", *common]
    assert run_main("gpt", "train", source, "--char", *tiny, "--max-steps", "60", "--lr", "1e-2", "--eval-interval", "0",
                    "--out", tmp_path / "gpt").returncode == 0
    before = load_weights(tmp_path / "gpt")
    code, out, err = run_main("gpt", "prompt-tune", tmp_path / "gpt", target, "--val", target, "--prompt-length", "4", "--prompt-init", "vocab",
                              "--max-steps", "100", "--lr", "0.3", *common, "--json", "--out", tmp_path / "prompt")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["val_loss"] < summary["val_loss_before"] - 0.01  # the prompt moves the LM toward the target
    assert summary["trainable_parameters"] == 4 * 16
    after = load_weights(tmp_path / "gpt")
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert set(load_weights(tmp_path / "prompt")) == {"prompt.weight"}
    args = ["generate", tmp_path / "gpt", "--prompt", "be", "--strategy", "greedy", "--max-new-tokens", "6",
            "--device", "cpu", "--json"]
    with_prompt = run_main(*args, "--soft-prompt", tmp_path / "prompt")
    assert with_prompt.returncode == 0, with_prompt.stderr
    assert len(json.loads(with_prompt.stdout)["tokens"]) == 6
    # a prompt learned for one model is refused by another
    assert run_main("gpt", "train", source, "--char", *tiny, "--max-steps", "2", "--eval-interval", "0",
                    "--out", tmp_path / "other").returncode == 0
    refused = run_main("generate", tmp_path / "other", "--prompt", "be", "--soft-prompt", tmp_path / "prompt")
    assert refused.returncode == 1 and "learned for" in refused.stderr


def test_zero_shot_cloze_scores_by_hand(tiny, data):
    pattern, verbalizer = "{text} it was [MASK] .", "1=good,0=bad"
    result = evaluate(tiny, [str(data / "dev.tsv")], device="cpu", pattern=pattern, verbalizer=verbalizer)
    backbone = load_backbone(tiny, keep_mlm_head=True).eval()
    tok = backbone.tokenizer
    ids = {w: tok.token_to_id(w) for w in ("[CLS]", "[SEP]", "[MASK]", "good", "bad")}
    correct = 0
    lines = (data / "dev.tsv").read_text().splitlines()[1:]
    for line in lines:
        text, label = line.split("\t")
        seq = [ids["[CLS]"], *tok.encode(text), *tok.encode("it was"), ids["[MASK]"], *tok.encode("."), ids["[SEP]"]]
        with torch.no_grad():
            h = backbone.model.encode(torch.tensor([seq]))
            logits = backbone.model.mlm_logits(h[0, seq.index(ids["[MASK]"])])
        guess = "1" if logits[ids["good"]] > logits[ids["bad"]] else "0"
        correct += guess == label
    assert result["examples"] == len(lines)
    assert result["accuracy"] == pytest.approx(correct / len(lines))


def test_cloze_fine_tuning_few_shot_and_the_refusals(tiny, data, tmp_path):
    pattern, verbalizer = "{text} it was [MASK] .", "1=good,0=bad"
    summary = finetune(tiny, [str(data / "train.tsv")], tmp_path / "pet", FinetuneSpec(
        strategy="prompt", prompt_length=2, pattern=pattern, verbalizer=verbalizer, train_limit=6), config(),
        val=data / "dev.tsv")
    assert summary["train_examples"] == 6 and summary["trainable_parameters"] == 2 * 32  # the prompt alone
    model, _ = load_finetuned(tmp_path / "pet")
    assert model.cloze and model.backbone.template is not None
    assert evaluate(tmp_path / "pet", [str(data / "dev.tsv")], device="cpu")["accuracy"] == summary["best"]["accuracy"]
    headless = make_tiny_bert_dir(tmp_path / "headless", max_len=32, mlm_head=False, nsp_head=False)
    code, _, err = run_main("evaluate", headless, data / "dev.tsv", "--pattern", pattern, "--verbalizer", verbalizer)
    assert code == 1 and "masked-LM head" in err
    code, _, err = run_main("evaluate", tiny, data / "dev.tsv", "--pattern", "{text} it was good .",
                            "--verbalizer", verbalizer)
    assert code == 1 and "[MASK]" in err
    code, _, err = run_main("evaluate", tiny, data / "dev.tsv", "--pattern", pattern, "--verbalizer", "1=good,0=films")
    assert code == 1 and "one token" in err


def test_logits_of_a_prompted_model_do_not_depend_on_batch_padding(tiny):
    model = prompted(tiny, "input-prompt").eval()
    with torch.no_grad():
        model.prompt.net[2].weight.normal_()  # a prompt that does depend on the input
    texts = [line.split("\t")[0] for line in labeled_lines(7)]
    data = encode_examples(model.backbone, [type("E", (), {"text": t, "text_pair": None, "label": None,
                                                          "where": ""})() for t in texts], "classify", None, None)
    batched = logits_in_order(model, data, batch_size=4)
    for i in range(len(data)):
        with torch.no_grad():
            alone = model(**collate([data.rows[i]], None, model.backbone.pad_id, True))[0]
        torch.testing.assert_close(batched[i], alone, atol=1e-5, rtol=1e-5)
    assert F.softmax(batched[0], -1).sum() == pytest.approx(1.0)
