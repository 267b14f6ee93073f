"""BERT (dlnlp.models.bert): padding, the MLM loss at the selected positions, features, saving and loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dlnlp.io.hf import wordpiece_tokenizer_json
from dlnlp.models.bert import Bert, BertConfig, BertOutput, load_bert, save_bert, special_token_ids
from dlnlp.models.registry import load_model

WORDS = ["the", "a", "is", "of", "and", "it", "was", "not", "film", "movie", "good", "bad", "great", "boring",
         "capital", "france", "paris", "city", "story", "actor", "play", "##s", "##ing", "##ed", ".", ","]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]


def tiny_config(**overrides) -> BertConfig:
    settings = dict(vocab_size=len(VOCAB), dim=32, n_layer=2, n_head=4, intermediate=64, max_len=64)
    return BertConfig(**{**settings, **overrides})


def make_tiny_bert_dir(directory: Path, *, seed: int = 0, **overrides) -> Path:
    """A randomly initialized BERT model directory with a WordPiece tokenizer over :data:`VOCAB`."""
    torch.manual_seed(seed)
    model = Bert(tiny_config(**overrides))
    vocab_file = directory.parent / f"{directory.name}-vocab.txt"
    vocab_file.write_text("".join(t + "\n" for t in VOCAB), encoding="utf-8")
    tokenizer = wordpiece_tokenizer_json(vocab_file)
    return save_bert(model, directory, files={"tokenizer.json": tokenizer}, level="tokenizer")


def random_batch(config: BertConfig, batch: int = 3, length: int = 9, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, config.vocab_size, (batch, length), generator=g)
    ids[:, 0], ids[:, -1] = 2, 3
    types = torch.zeros_like(ids)
    types[:, length // 2:] = 1
    return ids, types


def test_config_validate_names_the_cli_option():
    with pytest.raises(ValueError, match=r"^--heads must be >= 1, got 0$"):
        tiny_config(n_head=0).validate()
    with pytest.raises(ValueError, match=r"--dim \(30\) must be divisible by --heads \(4\)"):
        Bert(tiny_config(dim=30))
    with pytest.raises(ValueError, match="--dropout"):
        tiny_config(dropout=1.5).validate()
    with pytest.raises(ValueError, match="pooler"):
        tiny_config(pooler=False, nsp_head=True).validate()
    assert BertConfig.from_dict(tiny_config().to_dict()) == tiny_config()


def test_padding_does_not_change_the_real_tokens():
    torch.manual_seed(0)
    model = Bert(tiny_config()).eval()
    ids, types = random_batch(model.config)
    padded = torch.cat([ids, torch.zeros(3, 5, dtype=torch.long)], 1)
    padded_types = torch.cat([types, torch.zeros(3, 5, dtype=torch.long)], 1)
    mask = (torch.arange(14) < 9).long().expand(3, 14)
    alone = model.features(ids, types)
    with_pad = model.features(padded, padded_types, mask)
    for a, b in zip(alone.hidden_states, with_pad.hidden_states, strict=True):
        torch.testing.assert_close(b[:, :9], a, atol=1e-5, rtol=0)
    out, out_pad = model(ids, types), model(padded, padded_types, mask)
    torch.testing.assert_close(out_pad.mlm_logits[:, :9], out.mlm_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(out_pad.nsp_logits, out.nsp_logits, atol=1e-5, rtol=0)
    # a shorter row padded inside the batch gives what it gives alone
    short = model.encode(ids[:1, :5], types[:1, :5])
    ragged = padded.clone()
    ragged[0, 5:] = 0
    mask2 = mask.clone()
    mask2[0, 5:] = 0
    torch.testing.assert_close(model.encode(ragged, padded_types, mask2)[0, :5], short[0], atol=1e-5, rtol=0)


def test_mlm_loss_at_the_selected_positions_equals_the_full_loss():
    torch.manual_seed(0)
    model = Bert(tiny_config()).eval()
    ids, types = random_batch(model.config)
    labels = torch.full_like(ids, -100)
    labels[0, 2], labels[1, 4], labels[2, 1], labels[2, 7] = 7, 8, 9, 10
    nsp = torch.tensor([0, 1, 1])
    out = model(ids, types, mlm_labels=labels, nsp_labels=nsp)
    assert isinstance(out, BertOutput)
    full = model(ids, types).mlm_logits
    expected = F.cross_entropy(full.reshape(-1, full.size(-1)), labels.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(out.mlm_loss, expected)
    assert out.mlm_logits.shape == (4, model.config.vocab_size)
    torch.testing.assert_close(out.mlm_logits, full[labels != -100])
    torch.testing.assert_close(out.nsp_loss, F.cross_entropy(out.nsp_logits, nsp))
    torch.testing.assert_close(out.loss, out.mlm_loss + out.nsp_loss)
    # MLM alone: loss is the MLM loss; no selected position: 0, not NaN
    assert model(ids, types, mlm_labels=labels).loss == out.mlm_loss
    empty = model(ids, mlm_labels=torch.full_like(ids, -100))
    assert empty.mlm_loss.item() == 0.0 and empty.mlm_logits.shape == (0, model.config.vocab_size)


def test_the_decoder_is_tied_and_training_lowers_the_loss():
    torch.manual_seed(0)
    model = Bert(tiny_config(dropout=0.0, attn_dropout=0.0))
    assert model.mlm_decoder.weight is model.tok_emb.weight
    ids, types = random_batch(model.config, batch=4)
    labels = torch.full_like(ids, -100)
    labels[:, 3] = ids[:, 3]
    masked = ids.clone()
    masked[:, 3] = 4
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = model(masked, types, mlm_labels=labels, nsp_labels=torch.tensor([0, 1, 0, 1])).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert model.mlm_decoder.weight is model.tok_emb.weight


def test_features_follow_hf_hidden_states():
    torch.manual_seed(0)
    model = Bert(tiny_config()).eval()
    ids, types = random_batch(model.config)
    feats = model.features(ids, types)
    assert len(feats.hidden_states) == model.config.n_layer + 1
    assert torch.equal(feats.hidden_states[-1], feats.last_hidden_state)
    assert torch.equal(model.encode(ids, types), feats.last_hidden_state)
    picked = model.features(ids, types, layers=[-1, 0])
    assert torch.equal(picked.hidden_states[0], feats.hidden_states[-1])
    assert torch.equal(picked.hidden_states[1], feats.hidden_states[0])
    assert model.features(ids, layers=None).hidden_states == ()
    torch.testing.assert_close(model.pooled(ids, types), torch.tanh(model.pooler(feats.last_hidden_state[:, 0])))
    with pytest.raises(ValueError, match="exceeds"):
        model.encode(torch.zeros(1, 65, dtype=torch.long))


def test_heads_are_optional():
    torch.manual_seed(0)
    model = Bert(tiny_config(mlm_head=False, nsp_head=False, pooler=False)).eval()
    ids, _ = random_batch(model.config)
    out = model(ids)
    assert out == BertOutput()
    with pytest.raises(ValueError, match="no masked-LM head"):
        model(ids, mlm_labels=ids)
    with pytest.raises(ValueError, match="no next-sentence head"):
        model(ids, nsp_labels=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="no pooler"):
        model.pooled(ids)


def test_save_and_load_through_the_registry(tmp_path):
    directory = make_tiny_bert_dir(tmp_path / "bert")
    loaded = load_model(directory, kind="bert")
    assert loaded.family.kind == "bert"
    model, _ = load_bert(directory)
    torch.manual_seed(0)
    fresh = Bert(tiny_config())
    ids, types = random_batch(fresh.config)
    torch.testing.assert_close(model(ids, types).mlm_logits, fresh.eval()(ids, types).mlm_logits)
    from safetensors.torch import load_file

    assert "mlm_decoder.weight" not in load_file(str(directory / "model.safetensors"))  # stored once
    tokenizer = loaded.codec.tokenizer
    assert special_token_ids(tokenizer) == {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4}
    assert tokenizer.encode("The film [MASK] good.") == [
        VOCAB.index("the"), VOCAB.index("film"), 4, VOCAB.index("good"), VOCAB.index(".")]
