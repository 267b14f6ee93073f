"""ELMo's biLM: character encoding, each direction's causality, the loss by hand, the softmaxes, the encoder."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dlnlp.errors import InputError
from dlnlp.models.elmo import (
    BOUNDARY,
    BOUNDARY_CHAR,
    BOW_CHAR,
    EOW_CHAR,
    BiLM,
    CharCNN,
    ElmoConfig,
    ElmoEncoder,
    encode_word,
    encode_words,
    split_words,
)


def tiny(**overrides) -> ElmoConfig:
    values = dict(
        vocab_size=12,
        max_chars=12,
        char_dim=4,
        filters=[[1, 4], [2, 4], [3, 6]],
        highway=1,
        dim=6,
        hidden=10,
        layers=2,
        dropout=0.0,
        softmax="full",
    )
    values.update(overrides)
    return ElmoConfig(**values)


def model(**overrides) -> BiLM:
    torch.manual_seed(0)
    return BiLM(tiny(**overrides)).eval()


# -- characters -------------------------------------------------------------------------------------------


def test_words_are_utf8_bytes_between_markers():
    assert encode_word("ab", 10) == [BOW_CHAR, ord("a") + 1, ord("b") + 1, EOW_CHAR]
    # non-ASCII: one id per UTF-8 byte, not per character
    assert encode_word("é", 10) == [BOW_CHAR, 0xC3 + 1, 0xA9 + 1, EOW_CHAR]
    assert len(encode_word("日本", 20)) == 2 + 6
    assert encode_word(BOUNDARY, 10) == [BOW_CHAR, BOUNDARY_CHAR, EOW_CHAR]


def test_a_very_long_word_is_cut_and_keeps_its_end_marker():
    ids = encode_word("x" * 1000, 12)
    assert len(ids) == 12 and ids[0] == BOW_CHAR and ids[-1] == EOW_CHAR and ids[1:-1] == [ord("x") + 1] * 10
    table = encode_words(["a", "y" * 50, "日本語"], 8)
    assert table.shape == (3, 8)
    assert list(table[0, :4]) == [BOW_CHAR, ord("a") + 1, EOW_CHAR, 0]  # zero padding after the word
    assert table[1, -1] == EOW_CHAR and table[2, -1] == EOW_CHAR  # cut inside a character: bytes are cut


def test_literal_special_tokens_are_dropped_as_ngram_does():
    assert split_words("a <s> b </s> <unk>  c") == ["a", "b", "c"]


def test_a_words_vector_does_not_depend_on_its_batch():
    torch.manual_seed(0)
    cnn = CharCNN(tiny()).eval()
    alone = torch.from_numpy(encode_words(["é"], 12).astype(np.int64))
    batch = torch.from_numpy(encode_words(["é", "x" * 40, "ab"], 12).astype(np.int64))
    padded = torch.nn.functional.pad(alone, (0, 20))
    with torch.no_grad():
        assert torch.allclose(cnn(alone)[0], cnn(batch)[0], atol=1e-6)
        assert torch.allclose(cnn(alone)[0], cnn(padded)[0], atol=1e-6)
        assert not torch.allclose(cnn(batch)[0], cnn(batch)[2])


# -- causality -------------------------------------------------------------------------------------------


def _states(m: BiLM, words: list[str]) -> list[torch.Tensor]:
    chars = torch.from_numpy(encode_words(words, m.config.max_chars).astype(np.int64))[None]
    with torch.no_grad():
        return list(m.features(chars).hidden_states)


def test_forward_states_do_not_see_later_words_nor_backward_states_earlier_ones():
    m = model()
    d = m.config.dim
    a = _states(m, ["</s>", "the", "cat", "sat", "down"])
    later = _states(m, ["</s>", "the", "cat", "ran", "away"])
    earlier = _states(m, ["</s>", "a", "dog", "sat", "down"])
    for layer in range(1, m.config.layers + 1):
        # forward half: positions 0..2 only read words 0..2
        assert torch.equal(a[layer][0, :3, :d], later[layer][0, :3, :d])
        assert not torch.allclose(a[layer][0, 3:, :d], later[layer][0, 3:, :d])
        # backward half: positions 3.. only read words 3..
        assert torch.allclose(a[layer][0, 3:, d:], earlier[layer][0, 3:, d:], atol=1e-6)
        assert not torch.allclose(a[layer][0, :3, d:], earlier[layer][0, :3, d:])


def test_hidden_state_zero_is_the_token_vector_twice():
    m = model()
    states = _states(m, ["</s>", "hello", "world"])
    d = m.config.dim
    assert len(states) == m.config.layers + 1 and states[0].shape[-1] == 2 * d
    assert torch.equal(states[0][..., :d], states[0][..., d:])


# -- the loss --------------------------------------------------------------------------------------------


def _batch(words_f: list[int], words_b: list[int], targets_f: list[int], targets_b: list[int]):
    """A one-stream step over a toy table of 5 distinct words (indices into ``chars``)."""
    chars = torch.from_numpy(encode_words(["</s>", "a", "b", "cc", "d"], 12).astype(np.int64))
    t = lambda v: torch.tensor([v])  # noqa: E731
    return dict(
        input_ids=t(words_f), targets=t(targets_f), chars=chars, bwd_ids=t(words_b), bwd_targets=t(targets_b)
    )


def test_loss_by_hand_when_the_softmax_ignores_the_context():
    m = model(vocab_size=4)
    with torch.no_grad():
        m.softmax.linear.weight.zero_()
        m.softmax.linear.bias.copy_(torch.tensor([0.0, 1.0, 2.0, 3.0]))
    batch = _batch([0, 1, 2], [1, 2, 0], [1, 2, 3], [0, 1, 1])
    loss, _ = m(**batch)
    log_z = math.log(sum(math.exp(b) for b in (0.0, 1.0, 2.0, 3.0)))
    nll = lambda t: log_z - t  # -log softmax(bias)[t] = log Z - bias[t]  # noqa: E731
    forward = (nll(1) + nll(2) + nll(3)) / 3
    backward = (nll(0) + nll(1) + nll(1)) / 3
    assert loss.item() == pytest.approx(0.5 * (forward + backward), rel=1e-6)


def test_loss_is_the_mean_of_each_directions_nll_of_its_next_word():
    """Forward position t predicts word t+1 from f_t; backward position t predicts word t-1 from b_t."""
    m = model()
    words = ["</s>", "a", "b", "cc", "d"]
    chars = torch.from_numpy(encode_words(words, 12).astype(np.int64))
    targets = torch.tensor([[3, 4, 5, 6, 1]])  # output ids of the next words
    previous = torch.tensor([[1, 7, 8, 9, 10]])  # output ids of the previous words
    ids = torch.arange(5)[None]
    loss, _ = m(input_ids=ids, targets=targets, chars=chars, bwd_ids=ids, bwd_targets=previous)
    with torch.no_grad():
        top = m.features(chars[None]).last_hidden_state[0]  # [5, 2 dim]
        d = m.config.dim
        log_p_f = m.softmax.log_probs(top[:, :d]).gather(1, targets[0][:, None]).mean()
        log_p_b = m.softmax.log_probs(top[:, d:]).gather(1, previous[0][:, None]).mean()
    assert loss.item() == pytest.approx(-0.5 * (log_p_f + log_p_b).item(), rel=1e-5)


@pytest.mark.parametrize("softmax", ["adaptive", "sampled"])
def test_other_softmaxes_are_distributions_and_train(softmax):
    torch.manual_seed(0)
    m = BiLM(
        tiny(vocab_size=40, softmax=softmax, cutoffs=[5, 20] if softmax == "adaptive" else None, samples=8)
    )
    h = torch.randn(7, m.config.dim)
    with torch.no_grad():
        m.eval()
        assert torch.allclose(m.softmax.log_probs(h).exp().sum(-1), torch.ones(7), atol=1e-5)
        targets = torch.randint(0, 40, (7,))
        exact = -m.softmax.log_probs(h).gather(1, targets[:, None])[:, 0]
        assert torch.allclose(
            m.softmax.nll(h, targets), exact, atol=1e-5
        )  # evaluation scores the full softmax
    m.train()
    batch = _batch([0, 1, 2], [1, 2, 0], [1, 2, 3], [0, 1, 1])
    optimizer = torch.optim.Adam(m.parameters(), lr=0.05)
    first = None
    for _ in range(30):
        loss, _ = m(**batch)
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first


def test_state_carries_a_stream_across_windows():
    m = model()
    ids = torch.tensor([[0, 1, 2, 3, 4, 1]])
    chars = torch.from_numpy(encode_words(["</s>", "a", "b", "cc", "d"], 12).astype(np.int64))
    vectors = m.token_encoder(chars)[ids]
    targets = torch.tensor([[2, 3, 4, 5, 6, 7]])
    with torch.no_grad():
        whole, _ = m.direction_nll(False, vectors, targets)
        first, state = m.direction_nll(False, vectors[:, :4], targets[:, :4])
        second, _ = m.direction_nll(False, vectors[:, 4:], targets[:, 4:], state)
        assert torch.allclose(whole, torch.cat([first, second], 1), atol=1e-6)
        # the backward LM reads right to left: its state goes from the right window to the left one
        whole, _ = m.direction_nll(True, vectors, targets)
        right, state = m.direction_nll(True, vectors[:, 3:], targets[:, 3:])
        left, _ = m.direction_nll(True, vectors[:, :3], targets[:, :3], state)
        assert torch.allclose(whole, torch.cat([left, right], 1), atol=1e-6)


# -- the encoder -----------------------------------------------------------------------------------------


def test_encoder_returns_words_only_and_batches_like_single_sentences():
    enc = ElmoEncoder(model())
    sentences = [["the", "bank", "of", "the", "river"], ["a"], [], ["money", "in", "the", "bank"]]
    chars, mask = enc.batch(sentences)
    out = enc(chars, mask)
    words = enc.words_mask(mask)
    assert words.sum(1).tolist() == [5, 1, 0, 4]
    assert len(out.hidden_states) == 3 and out.hidden_states[0].shape[-1] == enc.dim
    for i, sentence in enumerate(sentences):
        c, m = enc.batch([sentence])
        alone = enc(c, m)
        for layer in range(3):
            assert torch.allclose(
                alone.hidden_states[layer][0, : len(sentence)],
                out.hidden_states[layer][i, : len(sentence)],
                atol=1e-5,
            )
    # "bank" in two contexts gets two vectors
    top = out.hidden_states[-1]
    assert not torch.allclose(top[0, 1], top[3, 3])


def test_a_warmed_up_encoder_starts_each_sentence_from_the_mean_boundary_state():
    enc = ElmoEncoder(model())
    text = [["a", "b"], ["cc"], ["d", "a", "b"], ["b"]]
    enc.warm_up(text, streams=2)
    # run 1 is "a b </s> cc", run 2 "d a b </s> b": the forward state after each run, then their mean
    m = enc.bilm
    ends = []
    for run in (["</s>", "a", "b", "</s>", "cc"], ["d", "a", "b", "</s>", "b"]):  # left-padded with </s>
        x = m.encode_tokens(torch.from_numpy(encode_words(run, 12).astype(np.int64)).unsqueeze(0))
        ends.append(m.direction(False, x)[2])
    starts = []  # the backward LM reads right to left, so its runs are right-padded
    for run in (["a", "b", "</s>", "cc", "</s>"], ["d", "a", "b", "</s>", "b"]):
        x = m.encode_tokens(torch.from_numpy(encode_words(run, 12).astype(np.int64)).unsqueeze(0))
        starts.append(m.direction(True, x)[2])
    for direction, states in enumerate((ends, starts)):
        for layer in range(2):
            for part in range(2):
                expected = (states[0][layer][part] + states[1][layer][part]) / 2
                torch.testing.assert_close(enc.start_state[direction][layer][part], expected)
    # the sentence is read from that state: its first forward vector is the stream's, after "</s>"
    sentences = [["the", "bank"], ["a", "b", "cc"]]
    chars, mask = enc.batch(sentences)
    out = enc(chars, mask)
    x = m.encode_tokens(torch.from_numpy(encode_words(["</s>", "the"], 12).astype(np.int64)).unsqueeze(0))
    by_hand = m.direction(False, x, enc.start_state[0])[1][-1][0, 1]
    torch.testing.assert_close(out.hidden_states[-1][0, 0, : m.config.dim], by_hand)
    cold = ElmoEncoder(m)(chars, mask)
    assert not torch.allclose(cold.hidden_states[-1][0, 0], out.hidden_states[-1][0, 0])
    # still independent of the batch
    alone = enc(*enc.batch(sentences[1:]))
    torch.testing.assert_close(alone.hidden_states[-1][0, :3], out.hidden_states[-1][1, :3], atol=1e-5, rtol=1e-5)
    with pytest.raises(InputError):
        enc.warm_up(text, streams=8)


def test_config_refuses_bad_sizes():
    with pytest.raises(ValueError, match="--dim"):
        tiny(dim=20, hidden=10).validate()
    with pytest.raises(ValueError, match="--softmax"):
        tiny(softmax="hierarchical").validate()
    with pytest.raises(ValueError, match="--cutoffs"):
        tiny(softmax="adaptive", cutoffs=[5, 3]).validate()
    with pytest.raises(ValueError, match="--filters"):
        tiny(filters=[[0, 3]]).validate()
