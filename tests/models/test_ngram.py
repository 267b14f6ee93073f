"""N-gram models: hand-checked small cases, normalization properties, counting paths, KenLM figures."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlnlp.errors import InputError
from dlnlp.models.ngram import FALLBACK_DISCOUNTS, NORMALIZED, SMOOTHING, estimate, train
from dlnlp.models.ngram_counts import BOS_ID, EOS_ID, UNK_ID, adjusted_counts, count_corpus
from tests.conftest import shared_path

TOY = ["a b", "a b", "b a"]
D = [(0.5, 1.0, 1.5)] * 5


def logp(model, sentence: str) -> float:
    totals, _, _ = model.score_lines([sentence])
    return float(totals[0])


def ngram_table(counts, n: int, values) -> dict[tuple[str, ...], int]:
    words = counts.words(n)
    return {tuple(counts.vocab[w] for w in row): int(v) for row, v in zip(words, values, strict=True)}


# -- counting ---------------------------------------------------------------------------------------


def test_counts_and_kenlm_adjusted_counts_by_hand():
    counts = count_corpus(TOY, 3)
    assert counts.tokens == 9 and counts.sentences == 3
    raw2 = ngram_table(counts, 2, counts.orders[1].raw)
    assert raw2 == {("<s>", "a"): 2, ("a", "b"): 2, ("b", "</s>"): 2, ("<s>", "b"): 1, ("b", "a"): 1,
                    ("a", "</s>"): 1}
    adj = adjusted_counts(counts.orders, len(counts.vocab))
    # Bigrams starting with <s> keep raw counts; the others count distinct left words in trigrams.
    assert ngram_table(counts, 2, adj[1]) == {("<s>", "a"): 2, ("a", "b"): 1, ("b", "</s>"): 1, ("<s>", "b"): 1,
                                              ("b", "a"): 1, ("a", "</s>"): 1}
    uni = {counts.vocab[i]: int(a) for i, a in enumerate(adj[0])}
    assert uni == {"<unk>": 0, "<s>": 0, "</s>": 2, "a": 2, "b": 2}
    # The top order keeps raw counts, trigrams starting with <s> included.
    raw3 = ngram_table(counts, 3, adj[2])
    assert raw3[("<s>", "a", "b")] == 2 and raw3[("a", "b", "</s>")] == 2 and len(raw3) == 4


def test_chunked_spilling_counts_equal_in_memory_counts(tmp_path):
    lines = [" ".join(f"w{(i * 7 + j * 3) % 50}" for j in range(i % 11)) for i in range(3000)]
    whole = count_corpus(lines, 4)
    spilled = count_corpus(lines, 4, memory_bytes=1 << 16, temp_dir=str(tmp_path), chunk_lines=200)
    assert whole.vocab == spilled.vocab
    for a, b in zip(whole.orders, spilled.orders, strict=True):
        np.testing.assert_array_equal(a.keys, b.keys)
        np.testing.assert_array_equal(a.raw, b.raw)
        if a.suffix is not None:
            np.testing.assert_array_equal(a.suffix, b.suffix)
    assert list(tmp_path.iterdir()) == []  # shards cleaned up


def test_min_count_and_max_vocab_map_rare_words_to_unk():
    lines = ["a a a b b c", "a b d"]
    model = train(lines, 2, min_count=2)
    assert model.vocab == ["<unk>", "<s>", "</s>", "a", "b"]
    model = train(lines, 2, max_vocab=1)
    assert model.vocab == ["<unk>", "<s>", "</s>", "a"]
    # <unk> is now a trained word: "c" and "d" are scored through it, as OOVs.
    assert model.score_lines(["c"])[2][0] == 1


def test_literal_special_tokens_are_whitespace_as_in_lmplz():
    model = train(["a <s> b </s>", "<unk> a"], 2)
    assert sorted(model.vocab) == sorted(["<unk>", "<s>", "</s>", "a", "b"])
    assert model.info["dropped_special_tokens"] == 3


@pytest.mark.parametrize("bad", [{"order": 0}, {"smoothing": "magic"}, {"min_count": 0}])
def test_bad_parameters(bad):
    with pytest.raises(InputError):
        train(TOY, **({"order": 2} | bad))


def test_empty_corpus_is_an_error():
    with pytest.raises(InputError):
        train([], 3)


# -- hand-checked probabilities ----------------------------------------------------------------------


def test_modified_kneser_ney_bigram_by_hand():
    model = train(TOY, 2, discounts=D)
    # Unigrams: continuation counts a=b=</s>=2 (sum 6), each discounted by D2=1, gamma = 3/6;
    # uniform over the 4 words other than <s>: p(a) = 1/6 + 0.5/4 = 7/24, p(<unk>) = 1/8.
    p1 = 10.0 ** model.logp[0]
    assert p1[model.index["a"]] == pytest.approx(7 / 24)
    assert p1[model.index["<unk>"]] == pytest.approx(1 / 8)
    # p(a|<s>) = (2 - 1)/3 + 0.5 * 7/24 = 23/48; p(b|a) and p(</s>|b) likewise.
    assert logp(model, "a b") == pytest.approx(3 * math.log10(23 / 48))
    # p(a|b) = (1 - 0.5)/3 + 0.5 * 7/24 = 15/48.
    assert logp(model, "b a") == pytest.approx(math.log10(15 / 48) + math.log10(15 / 48) + math.log10(15 / 48))
    # An OOV costs gamma(a) * p(<unk>), then the context restarts: p(</s>) = 7/24.
    assert logp(model, "a zzz") == pytest.approx(math.log10(23 / 48) + math.log10(0.5 / 8) + math.log10(7 / 24))
    assert model.logbo[0][model.index["a"]] == pytest.approx(math.log10(0.5))


def test_discounts_from_counts_of_counts():
    from dlnlp.models.ngram import kn_discounts

    adjusted = np.array([1] * 10 + [2] * 4 + [3] * 3 + [4] * 2 + [7])
    (d1, d2, d3), ok = kn_discounts(adjusted)
    y = 10 / (10 + 2 * 4)
    assert ok
    assert d1 == pytest.approx(1 - 2 * y * 4 / 10)
    assert d2 == pytest.approx(2 - 3 * y * 3 / 4)
    assert d3 == pytest.approx(3 - 4 * y * 2 / 3)


def test_tiny_corpus_falls_back_to_default_discounts_with_a_warning():
    warnings: list[str] = []
    model = train(["a b c"], 3, warn=warnings.append)
    assert warnings and "fallback" in warnings[0]
    assert model.info["discounts"][0] == list(FALLBACK_DISCOUNTS)
    assert np.isfinite(logp(model, "a b c"))


def test_other_smoothings_by_hand():
    mle = train(TOY, 2, "mle")
    assert logp(mle, "a b") == pytest.approx(math.log10(2 / 3) + math.log10(2 / 3) + math.log10(2 / 3))
    assert logp(mle, "a a") == -math.inf  # unseen bigram after a seen context
    laplace = train(TOY, 2, "add-k", k=1.0)
    assert 10 ** laplace.logp[0][laplace.index["a"]] == pytest.approx(4 / 13)  # (3 + 1) / (9 + 4)
    assert 10 ** laplace.logp[0][laplace.index["<unk>"]] == pytest.approx(1 / 13)
    assert 10 ** laplace.next_log10([BOS_ID, laplace.index["a"]])[laplace.index["b"]] == pytest.approx(3 / 7)
    wb = train(TOY, 2, "witten-bell")
    # p(b) = 3/12 + 3/12 * 1/4 = 5/16; p(b|a) = 2/5 + 2/5 * 5/16 = 21/40.
    assert 10 ** wb.next_log10([BOS_ID, wb.index["a"]])[wb.index["b"]] == pytest.approx(21 / 40)
    stupid = train(TOY, 2, "stupid-backoff")
    assert not stupid.normalized
    assert 10 ** stupid.next_log10([BOS_ID, stupid.index["a"]])[stupid.index["a"]] == pytest.approx(0.4 * 3 / 9)


# -- properties ------------------------------------------------------------------------------------

words = st.sampled_from(["a", "b", "c", "d", "e"])
corpora = st.lists(st.lists(words, max_size=7).map(" ".join), min_size=1, max_size=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corpus=corpora, order=st.integers(1, 6), history=st.lists(st.sampled_from(["a", "b", "c", "zz"]), max_size=4),
       smoothing=st.sampled_from([s for s in SMOOTHING if NORMALIZED[s]]), target=words,
       min_count=st.integers(1, 2))
def test_normalized_models_sum_to_one_and_scoring_agrees(corpus, order, history, smoothing, target, min_count):
    model = train(corpus, order, smoothing, min_count=min_count)
    ids = [BOS_ID] + [model.index.get(w, 0) for w in history]
    lp = model.next_log10(ids)
    probs = 10.0 ** lp
    assert probs[BOS_ID] == 0.0
    assert probs.sum() == pytest.approx(1.0, abs=1e-6)
    # The backoff scorer over a whole sentence agrees with the full distribution at its last word.
    sentence = " ".join([*history, target])
    scores = model.score_stream(model.encode([sentence]))
    assert scores[-2] == pytest.approx(model.next_log10(ids)[model.index.get(target, 0)], abs=1e-9)


# -- KenLM's reference figures (lmplz on this machine, from the issue) --------------------------------


def test_brown_order5_counts_and_perplexity_match_lmplz():
    from dlnlp.io.corpus import iter_lines

    train_path = shared_path("corpora/brown/train.txt")
    valid = shared_path("corpora/brown/valid.txt")
    counts = count_corpus(iter_lines([str(train_path)]), 5)
    assert [len(o.keys) for o in counts.orders] == [52_923, 418_454, 797_436, 929_739, 925_296]
    model = estimate(counts)
    result = model.evaluate(iter_lines([str(valid)]))
    assert result["tokens"] == 61_123 and result["oov"] == 2_234
    assert result["perplexity"] == pytest.approx(376.62, rel=0.01)
    assert result["perplexity_excl_oov"] == pytest.approx(275.95, rel=0.01)


def test_generate_yields_sentences_one_at_a_time_and_checks_options_first():
    model = train(["the cat sat", "the dog sat", "a cat saw a dog"] * 3, 2)
    steps = []
    next_log10 = model.next_log10
    model.next_log10 = lambda history: steps.append(1) or next_log10(history)
    sentences = model.generate(num=1000, max_tokens=5, seed=0)
    assert isinstance(next(sentences), str) and len(steps) <= 5  # one sentence sampled, not a thousand
    for bad, message in [({"num": 0}, "--num must be >= 1, got 0"), ({"max_tokens": -1}, "--max-tokens must be >= 1"),
                         ({"temperature": -1.0}, "--temperature must be >= 0"), ({"top_k": -2}, "--top-k must be >= 0")]:
        with pytest.raises(InputError, match=message):
            model.generate(**bad)  # raised at the call, not at the first sentence


def test_generate_shares_the_samplers_meaning_of_temperature_top_k_and_top_p():
    model = train(["the cat sat", "the dog sat", "the cat ran", "a cat saw a dog"] * 3, 2)
    greedy = list(model.generate(num=3, max_tokens=6, temperature=0, seed=5))
    assert len(set(greedy)) == 1  # temperature 0: the likeliest word each time, whatever the seed
    words, history = [], [BOS_ID]
    for _ in range(6):
        lp = model.next_log10(history)
        lp[UNK_ID] = -np.inf
        w = int(np.argmax(lp))
        if w == EOS_ID:
            break
        history.append(w)
        words.append(model.vocab[w])
    assert greedy[0] == " ".join(words)
    unlimited = list(model.generate(num=20, max_tokens=6, top_k=0, seed=3))
    assert unlimited == list(model.generate(num=20, max_tokens=6, top_k=None, seed=3))
    assert len(set(unlimited)) > 1
    # a tiny nucleus keeps only the likeliest word: the same as greedy
    assert list(model.generate(num=3, max_tokens=6, top_p=1e-9, seed=7)) == greedy
