"""The pure-Python BPE oracle: hand-checked merges, tie-breaking, and parity with HF tokenizers."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlnlp.tokenization.bpe_reference import train_bpe

# Sennrich et al. (2016), figure 1's toy vocabulary.
TOY = {"low": 5, "lower": 2, "newest": 6, "widest": 3}


def hf_merges(lines, pre_tokenizer, vocab_size, min_frequency=0, special_tokens=(), initial_alphabet=()):
    from tokenizers import Tokenizer, models, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizer
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=list(special_tokens), initial_alphabet=list(initial_alphabet),
                                  show_progress=False)
    tokenizer.train_from_iterator(lines, trainer=trainer)
    merges = json.loads(tokenizer.to_str())["model"]["merges"]
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in merges], tokenizer.get_vocab()


def test_toy_corpus_merges_by_hand():
    # Pair counts: es 9, st 9 (tie: (e, s) has the smaller ids, e=1 < s=7), then est 9, then
    # lo 7 / ow 7 (tie: l=3 < o=5), low 7, then ne / ew / w+est all 6: (e, w) has the smallest ids.
    result = train_bpe(TOY, vocab_size=10 + 5)
    assert result.merges == [("e", "s"), ("es", "t"), ("l", "o"), ("lo", "w"), ("e", "w")]
    assert list(result.vocab)[:10] == list("deilnorstw")  # the alphabet by code point
    assert result.vocab["ew"] == 14
    assert result.encode_word("lowest") == ["low", "est"]
    assert result.encode_word("newer") == ["n", "ew", "e", "r"]


def test_vocab_budget_counts_special_tokens_and_alphabet():
    result = train_bpe(TOY, vocab_size=13, special_tokens=["<s>", "</s>"])
    assert list(result.vocab)[:2] == ["<s>", "</s>"]
    assert len(result.vocab) == 13 and len(result.merges) == 1


def test_min_frequency_stops_merging():
    result = train_bpe(TOY, vocab_size=100, min_frequency=7)
    assert result.merges == [("e", "s"), ("es", "t"), ("l", "o"), ("lo", "w")]


def test_merges_do_not_overlap_and_stop_when_no_pair_is_left():
    result = train_bpe({"aaaa": 1, "aaa": 1}, vocab_size=100)
    # (a, a) occurs 3 + 2 times; "aaa" becomes "aa a", "aaaa" becomes "aa aa"; then (aa, a) and
    # (aa, aa) tie at 1: ids a=0, aa=1 and (1, 0) < (1, 1), so "aaa" comes first, then "aaaa".
    assert result.merges == [("a", "a"), ("aa", "a"), ("aa", "aa")]
    assert len(result.vocab) == 4


def test_a_merge_that_recreates_an_existing_token_does_not_grow_the_vocabulary():
    # "abc" can be built as (ab, c) and as (a, bc): both merges are recorded, the token once.
    words = {"abc": 1, "ab": 3, "bc": 3}
    result = train_bpe(words, vocab_size=100)
    assert ("ab", "c") in result.merges or ("a", "bc") in result.merges
    assert len(result.vocab) == 3 + len(set(a + b for a, b in result.merges))
    assert train_bpe(words, vocab_size=100).merges == hf_merges(
        [w for w, c in words.items() for _ in range(c)], _whitespace(), 100)[0]


def _whitespace():
    from tokenizers import pre_tokenizers

    return pre_tokenizers.WhitespaceSplit()


def test_toy_corpus_matches_hf():
    lines = [w for w, c in TOY.items() for _ in range(c)]
    merges, vocab = hf_merges(lines, _whitespace(), vocab_size=10 + 5)
    result = train_bpe(TOY, vocab_size=15)
    assert result.merges == merges and result.vocab == vocab


@pytest.mark.parametrize("vocab_size,min_frequency", [(300, 0), (450, 2), (350, 4)])
def test_byte_level_parity_with_hf_on_a_real_corpus(vocab_size, min_frequency):
    from tokenizers import pre_tokenizers

    from tests.conftest import shared_path

    lines = shared_path("corpora/tinyshakespeare.txt").read_text(encoding="utf-8").split("\n")[:1500]
    pre = pre_tokenizers.ByteLevel(add_prefix_space=False)
    merges, vocab = hf_merges(lines, pre, vocab_size, min_frequency, ["<|endoftext|>"],
                              pre_tokenizers.ByteLevel.alphabet())
    words = Counter(word for line in lines for word, _ in pre.pre_tokenize_str(line))
    result = train_bpe(words, vocab_size, min_frequency=min_frequency, special_tokens=["<|endoftext|>"],
                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    assert len(merges) > 0
    assert result.merges == merges
    assert result.vocab == vocab


def test_builtin_corpus_parity_with_hf_metaspace():
    from tokenizers import pre_tokenizers

    from dlnlp.io.corpus import iter_lines

    lines = list(iter_lines(["builtin:python-help"]))[:800]
    pre = pre_tokenizers.Metaspace(prepend_scheme="always")
    merges, vocab = hf_merges(lines, pre, 400, 2, ["<unk>"])
    words = Counter(word for line in lines for word, _ in pre.pre_tokenize_str(line))
    result = train_bpe(words, 400, min_frequency=2, special_tokens=["<unk>"])
    assert result.merges == merges and result.vocab == vocab


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(alphabet="abcde ", min_size=1, max_size=12), min_size=1, max_size=12),
       st.integers(min_value=1, max_value=40))
def test_random_small_corpora_match_hf(lines, merges_budget):
    words = Counter(word for line in lines for word in line.split())
    alphabet = len({c for w in words for c in w})
    merges, vocab = hf_merges(lines, _whitespace(), alphabet + merges_budget)
    result = train_bpe(words, alphabet + merges_budget)
    assert result.merges == merges
    assert result.vocab == vocab
