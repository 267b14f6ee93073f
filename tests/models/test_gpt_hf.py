"""HF GPT-2 interop: import/export round trips and parity with transformers on a random small GPT-2."""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from dlnlp.decoding import DecodeConfig, GPTNextToken, generate  # noqa: E402
from dlnlp.errors import InputError  # noqa: E402
from dlnlp.models.gpt import load_gpt  # noqa: E402
from dlnlp.models.gpt_hf import export_hf_gpt2, import_hf_gpt2  # noqa: E402

VOCAB = 24
EOS = 3


def _word_tokenizer(path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {f"w{i}": i for i in range(VOCAB)}
    vocab["<|endoftext|>"] = EOS
    del vocab[f"w{EOS}"]
    tok = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.save(str(path))


@pytest.fixture(scope="module")
def hf_pair(tmp_path_factory):
    """A random GPT-2 saved in HF format, and the dlnlp import of it."""
    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=48, n_embd=32, n_layer=2, n_head=4,
                                     bos_token_id=EOS, eos_token_id=EOS, pad_token_id=EOS)
    hf = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # a larger spread of logits: beams differ and some end early at EOS
        hf.transformer.wte.weight.mul_(8.0)
        hf.transformer.wte.weight[EOS].mul_(3.0)
    hf.save_pretrained(root / "hf")
    _word_tokenizer(root / "hf" / "tokenizer.json")
    import_hf_gpt2(root / "hf", root / "dl")
    model, _ = load_gpt(root / "dl")
    return hf, model, root


def test_import_writes_a_model_directory(hf_pair):
    _, _, root = hf_pair
    config = json.loads((root / "dl" / "config.json").read_text())
    assert config["kind"] == "gpt" and config["model"]["n_layer"] == 2 and config["eos_id"] == EOS
    assert (root / "dl" / "tokenizer.json").is_file()


def test_logits_match_transformers(hf_pair):
    hf, model, _ = hf_pair
    ids = torch.randint(0, VOCAB, (3, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf(ids).logits
        got, _ = model(ids)
    assert (got - expected).abs().max().item() < 1e-4


def test_padded_batch_logits_match_transformers(hf_pair):
    hf, model, _ = hf_pair
    ids = torch.randint(0, VOCAB, (2, 10), generator=torch.Generator().manual_seed(2))
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, :4] = 0  # left padding
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        expected = hf(ids, attention_mask=mask, position_ids=positions).logits
        got, _ = model(ids, key_padding_mask=mask.bool(), position_ids=positions)
    keep = mask.bool()
    assert (got[keep] - expected[keep]).abs().max().item() < 1e-4


def test_hidden_states_match_transformers(hf_pair):
    """features() returns what GPT2Model's output_hidden_states does, left padding included."""
    hf, model, _ = hf_pair
    ids = torch.randint(0, VOCAB, (2, 10), generator=torch.Generator().manual_seed(5))
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, :3] = 0
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        expected = hf.transformer(ids, attention_mask=mask, position_ids=positions, output_hidden_states=True)
        got = model.features(ids, key_padding_mask=mask.bool(), position_ids=positions)
    assert len(got.hidden_states) == len(expected.hidden_states) == 3
    keep = mask.bool()
    for mine, theirs in zip(got.hidden_states, expected.hidden_states, strict=True):
        assert (mine[keep] - theirs[keep]).abs().max().item() < 1e-4
    assert (got.last_hidden_state[keep] - expected.last_hidden_state[keep]).abs().max().item() < 1e-4


def _prompts():
    g = torch.Generator().manual_seed(3)
    return [[int(t) for t in torch.randint(4, VOCAB, (n,), generator=g)] for n in (5, 5, 8, 3)]


@pytest.mark.parametrize("no_repeat", [2, 3])
def test_greedy_is_token_identical_to_generate(hf_pair, no_repeat):
    """A batch of prompts of different lengths (left-padded) against HF one prompt at a time."""
    hf, model, _ = hf_pair
    lm = GPTNextToken(model)
    prompts = _prompts()
    ours = generate(lm, prompts, DecodeConfig(strategy="greedy", max_new_tokens=20, eos_id=EOS,
                                              no_repeat_ngram=no_repeat))
    for prompt, [hyp] in zip(prompts, ours, strict=True):
        out = hf.generate(torch.tensor([prompt]), do_sample=False, num_beams=1, max_new_tokens=20,
                          eos_token_id=EOS, pad_token_id=EOS, no_repeat_ngram_size=no_repeat)
        assert hyp.tokens == out[0, len(prompt):].tolist()
    assert any(h[0].finished for h in ours) and not all(h[0].finished for h in ours)


@pytest.mark.parametrize("no_repeat", [0, 2])
def test_beam_search_same_best_sequence_as_generate(hf_pair, no_repeat):
    """HF 5.x ranks finished beams by sum log-prob / (new tokens) ** length_penalty: our "power" norm.

    HF stops a prompt once num_beams hypotheses are finished only with early_stopping=True (its
    default False keeps searching while a live beam could still win on a heuristic bound).
    """
    hf, model, _ = hf_pair
    lm = GPTNextToken(model)
    prompts = _prompts()
    config = DecodeConfig(strategy="beam", num_beams=4, num_return=4, length_penalty=1.0, max_new_tokens=12,
                          eos_id=EOS, no_repeat_ngram=no_repeat)
    ours = generate(lm, prompts, config)
    ended_early = 0
    for prompt, hyps in zip(prompts, ours, strict=True):
        out = hf.generate(torch.tensor([prompt]), do_sample=False, num_beams=4, num_return_sequences=4,
                          length_penalty=1.0, early_stopping=True, max_new_tokens=12, eos_token_id=EOS,
                          pad_token_id=EOS, no_repeat_ngram_size=no_repeat, output_scores=True,
                          return_dict_in_generate=True)
        best = out.sequences[0, len(prompt):].tolist()
        best = best[: best.index(EOS) + 1] if EOS in best else best
        assert hyps[0].tokens == best
        assert hyps[0].score == pytest.approx(out.sequences_scores[0].item(), abs=1e-4)
        got_scores = [h.score for h in hyps]
        assert got_scores == pytest.approx(out.sequences_scores.tolist(), abs=1e-4)
        ended_early += any(h.finished for h in hyps)
    assert ended_early > 0  # the test exercises hypotheses finished at EOS


def test_export_round_trip_loads_in_transformers(hf_pair, tmp_path):
    hf, _, root = hf_pair
    export_hf_gpt2(root / "dl", tmp_path / "back")
    again = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "back").eval()
    ids = torch.randint(0, VOCAB, (2, 16), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.allclose(again(ids).logits, hf(ids).logits, atol=1e-5)
    assert (tmp_path / "back" / "tokenizer.json").is_file()
    with pytest.raises(Exception, match="exists"):
        export_hf_gpt2(root / "dl", tmp_path / "back")


def test_import_refuses_other_architectures(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(InputError, match="llama"):
        import_hf_gpt2(tmp_path, tmp_path / "out")
    with pytest.raises(InputError, match="no such directory"):
        import_hf_gpt2(tmp_path / "missing", tmp_path / "out2")


def test_old_style_checkpoint_names_and_mask_buffers(hf_pair, tmp_path):
    """Checkpoints saved by GPT2Model (no 'transformer.' prefix) with the old causal-mask buffers."""
    from safetensors.torch import save_file

    hf, model, root = hf_pair
    state = {k[len("transformer."):]: v.clone() for k, v in hf.state_dict().items() if k.startswith("transformer.")}
    state["h.0.attn.bias"] = torch.tril(torch.ones(1, 1, 48, 48))
    state["h.0.attn.masked_bias"] = torch.tensor(-1e4)
    (tmp_path / "old").mkdir()
    save_file(state, str(tmp_path / "old" / "model.safetensors"))
    (tmp_path / "old" / "config.json").write_text((root / "hf" / "config.json").read_text())
    import_hf_gpt2(tmp_path / "old", tmp_path / "dl")
    again, _ = load_gpt(tmp_path / "dl")
    ids = torch.randint(0, VOCAB, (1, 12))
    assert torch.allclose(again(ids)[0], model(ids)[0], atol=1e-6)


def test_char_tokenizer_json_gives_dlnlp_char_ids_exactly():
    from tokenizers import Tokenizer

    from dlnlp.io.hf import char_tokenizer_json
    from dlnlp.tokenization.char import CharVocab

    vocab = CharVocab.build("the quick brown fox\r\n\t <>ünk 😀.,'")
    tokenizer = Tokenizer.from_str(char_tokenizer_json(vocab.chars))
    for text in ["the fox.\r\n", "  <unk> ", "😀ü\t\n\n", "Zébra ☃ x", "", "k>"]:
        ids = vocab.encode(text)
        assert tokenizer.encode(text).ids == ids, text
        assert tokenizer.decode(ids) == vocab.decode(ids), text  # unknown characters: U+FFFD both
