"""ELECTRA pretraining (dlnlp.models.electra): shared embeddings, the corruption and its labels, the loss
by hand, no gradient through the sample, the exported discriminator."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import dlnlp.models.electra as electra
from dlnlp.models.bert import IGNORE_INDEX, Bert
from dlnlp.models.electra import ElectraPretraining, generator_config, sample_tokens
from tests.models.test_bert import tiny_config


def _batch(config, seed: int = 0, batch: int = 4, length: int = 12):
    g = torch.Generator().manual_seed(seed)
    original = torch.randint(5, config.vocab_size, (batch, length), generator=g)
    original[:, 0] = 2
    mask = torch.ones_like(original)
    mask[-1, 8:] = 0  # one padded row
    original[-1, 8:] = config.pad_id
    selected = (torch.rand(original.shape, generator=g) < 0.3) & mask.bool()
    selected[:, 0] = False
    selected[0, 3] = True
    inputs = original.masked_fill(selected, 4)  # [MASK]
    labels = original.masked_fill(~selected, IGNORE_INDEX)
    return {"input_ids": inputs, "token_type_ids": torch.zeros_like(inputs), "attention_mask": mask,
            "mlm_labels": labels}, original, selected


def _model(**kw) -> ElectraPretraining:
    torch.manual_seed(0)
    return ElectraPretraining(tiny_config(mlm_head=False, nsp_head=False, **kw)).eval()


def test_the_generator_is_half_as_deep_and_shares_the_embeddings():
    model = _model(n_layer=4)
    assert len(model.generator.blocks) == 2 and len(model.discriminator.blocks) == 4
    assert generator_config(model.discriminator.config, 3).n_layer == 3
    for name in ("tok_emb", "pos_emb", "type_emb"):
        assert getattr(model.generator, name) is getattr(model.discriminator, name)
    assert model.generator.mlm_decoder.weight is model.discriminator.tok_emb.weight
    with pytest.raises(ValueError, match="no masked-LM or next-sentence head"):
        ElectraPretraining(tiny_config())


def test_the_discriminator_reads_the_original_with_samples_at_the_masked_positions(monkeypatch):
    model = _model()
    batch, original, selected = _batch(model.discriminator.config)
    seen = {}
    encode = model.discriminator.encode

    def spy(ids, *args):
        seen["ids"] = ids
        return encode(ids, *args)

    monkeypatch.setattr(model.discriminator, "encode", spy)
    out = model(**batch)
    corrupted = seen["ids"]
    assert torch.equal(corrupted[~selected], original[~selected])  # unmasked positions: the real token, not [MASK]
    assert not (corrupted == 4).any()
    assert torch.equal(out.replaced, corrupted != original)
    assert not out.replaced[~selected].any()
    assert out.replaced[selected].any()  # an untrained generator rarely guesses right


def test_the_loss_by_hand(monkeypatch):
    model = _model()
    batch, original, selected = _batch(model.discriminator.config)
    # a generator that samples the original token: nothing is replaced, every label is 0
    monkeypatch.setattr(electra, "sample_tokens", lambda logits: batch["mlm_labels"][selected])
    out = model(**batch)
    assert not out.replaced.any()
    generator_loss = model.generator(**batch).mlm_loss
    hidden = model.discriminator.encode(original, batch["token_type_ids"], batch["attention_mask"])
    logits = model.rtd_out(F.gelu(model.rtd_dense(hidden))).squeeze(-1)
    real = batch["attention_mask"].bool()
    rtd = -F.logsigmoid(-logits[real]).mean()  # -log(1 - sigmoid(z)) over the real tokens only
    assert out.mlm_loss.item() == pytest.approx(generator_loss.item(), rel=1e-5)
    assert out.rtd_loss.item() == pytest.approx(rtd.item(), rel=1e-5)
    assert out.loss.item() == pytest.approx(generator_loss.item() + 50 * rtd.item(), rel=1e-5)


def test_no_gradient_flows_through_the_sample():
    model = _model()
    batch, _, _ = _batch(model.discriminator.config)
    model(**batch).rtd_loss.backward()
    assert all(p.grad is None for p in model.generator.blocks.parameters())
    assert model.discriminator.tok_emb.weight.grad is not None  # shared: both losses train it
    assert all(p.grad is not None for p in model.discriminator.blocks.parameters())


def test_the_sample_follows_the_softmax():
    torch.manual_seed(0)
    logits = torch.tensor([[0.0, 1.0, 2.0]]).expand(20000, 3)
    counts = torch.bincount(sample_tokens(logits), minlength=3).float() / 20000
    assert counts.tolist() == pytest.approx(torch.softmax(logits[0], -1).tolist(), abs=0.015)


def test_the_exported_weights_are_a_plain_bert_encoder():
    model = _model()
    plain = Bert(model.discriminator.config)
    plain.load_saved_state(model.exported_state_dict())
    batch, _, _ = _batch(model.discriminator.config)
    plain.eval()
    ids, types, mask = batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]
    assert torch.equal(plain.encode(ids, types, mask), model.discriminator.encode(ids, types, mask))
    assert not any(k.startswith(("generator", "rtd")) for k in model.exported_state_dict())
