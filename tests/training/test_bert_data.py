"""BERT pretraining data: sentence shards, pair construction, dynamic and whole-word masking, resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlnlp.errors import InputError, OptionError
from dlnlp.tokenization import load_tokenizer
from dlnlp.tokenization.train import TrainSpec, train_tokenizer
from dlnlp.training.bert_data import (
    IGNORE_INDEX,
    PretrainingBatches,
    SentenceCorpus,
    SpecialIds,
    build_pairs,
    continuation_ids,
    load_bert_data,
    mask_tokens,
    prepare_bert_data,
)

WORDS = [*["the", "cat", "sat", "on", "a", "mat", "while", "dogs", "barked", "loudly", "at", "passing", "strangers", "near", "old", "houses"],
         *["and", "children", "played", "quietly", "under", "tall", "trees", "beside", "running", "water"]]
SPECIALS = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4)


def _sentences(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, int(rng.integers(3, 12)))) for _ in range(n)]


@pytest.fixture(scope="module")
def wordpiece(tmp_path_factory):
    """A small WordPiece tokenizer: words are split into ## pieces."""
    path = tmp_path_factory.mktemp("tok") / "wp.json"
    path.write_bytes(train_tokenizer(_sentences(300), TrainSpec(model="wordpiece", vocab_size=60, min_frequency=1)))
    return load_tokenizer(path)


def _synthetic(lengths_per_doc: list[list[int]], vocab: int = 1000, seed: int = 0) -> SentenceCorpus:
    """A corpus of random non-special ids with the given sentence lengths per document."""
    rng = np.random.default_rng(seed)
    lengths = [n for doc in lengths_per_doc for n in doc]
    tokens = rng.integers(5, vocab, sum(lengths)).astype(np.uint16)
    doc_ends = np.cumsum([len(doc) for doc in lengths_per_doc])
    return SentenceCorpus(tokens, np.cumsum(lengths).astype(np.int64), doc_ends.astype(np.int64))


def _docs(n_docs: int, sentences: int, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(3, 20, sentences).tolist() for _ in range(n_docs)]


def _doc_of(corpus: SentenceCorpus, offset: int) -> int:
    starts, _ = corpus.sentence_bounds()
    sentence = int(np.searchsorted(starts, offset, side="right")) - 1
    return int(np.searchsorted(corpus.documents, sentence, side="right")) - 1


# -- shards -----------------------------------------------------------------------------------------

def test_the_corpus_is_tokenized_once_into_sentences_and_documents(tmp_path, wordpiece):
    lines = _sentences(7, seed=1)
    text = "\n".join(lines[:3]) + "\n\n\n" + "\n".join(lines[3:5]) + "\n   \n" + "\n".join(lines[5:]) + "\n"
    (tmp_path / "c.txt").write_text(text)
    data = prepare_bert_data([str(tmp_path / "c.txt")], tmp_path / "run", tokenizer=wordpiece, val_fraction=0)
    corpus = data.train
    assert len(corpus) == 7 and corpus.documents.tolist() == [0, 3, 5, 7]
    starts, ends = corpus.sentence_bounds()
    for line, start, end in zip(lines, starts, ends, strict=True):
        assert corpus.tokens[start:end].tolist() == wordpiece.encode(line)
    assert isinstance(corpus.tokens, np.memmap)
    assert data.specials == SpecialIds.from_tokenizer(wordpiece)
    again = load_bert_data(tmp_path / "run")  # what --resume reads
    assert again.train.documents.tolist() == [0, 3, 5, 7] and again.meta == data.meta


def test_one_document_per_line_is_cut_into_sentences(tmp_path, wordpiece):
    (tmp_path / "c.txt").write_text("the cat sat. a dog barked! trees\n\nwater ran? yes\n")
    data = prepare_bert_data([str(tmp_path / "c.txt")], tmp_path / "run", tokenizer=wordpiece, val_fraction=0,
                             doc_per_line=True)
    assert len(data.train) == 5 and data.train.documents.tolist() == [0, 3, 5]


def test_validation_split_and_a_tokenizer_without_bert_specials(tmp_path, wordpiece):
    (tmp_path / "c.txt").write_text("\n".join(_sentences(20)) + "\n")
    data = prepare_bert_data([str(tmp_path / "c.txt")], tmp_path / "run", tokenizer=wordpiece, val_fraction=0.25)
    assert (len(data.train), len(data.val)) == (15, 5)
    assert data.val.sentence_bounds()[0][0] == data.train.sentence_bounds()[1][-1]
    bpe = tmp_path / "bpe.json"
    bpe.write_bytes(train_tokenizer(_sentences(50), TrainSpec(model="bpe", vocab_size=300)))
    with pytest.raises(InputError, match=r"no \[PAD\], \[UNK\], \[CLS\], \[SEP\], \[MASK\]"):
        prepare_bert_data([str(tmp_path / "c.txt")], tmp_path / "run2", tokenizer=load_tokenizer(bpe))


# -- pairs ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("task", ["nsp", "sop"])
def test_pairs_fit_the_length_and_balance_their_labels(task):
    corpus = _synthetic(_docs(60, 30))
    pairs = build_pairs(corpus, 64, task, np.random.default_rng(0))
    a_len, b_len = pairs.a1 - pairs.a0, pairs.b1 - pairs.b0
    assert len(pairs) > 300
    assert (a_len >= 1).all() and (b_len >= 1).all() and (a_len + b_len <= 64 - 3).all()
    assert abs(pairs.label.mean() - 0.5) < 0.08
    for k in range(len(pairs)):
        same = _doc_of(corpus, pairs.a0[k]) == _doc_of(corpus, pairs.b0[k])
        if task == "nsp":  # a random B comes from another document, a real one follows A
            assert same != bool(pairs.label[k])
            if not pairs.label[k]:
                assert pairs.a1[k] <= pairs.b0[k]
        else:  # both parts are consecutive text of one document; label 1: swapped
            assert same
            assert (pairs.a0[k] > pairs.b0[k]) == bool(pairs.label[k])


def test_short_sequence_probability():
    corpus = _synthetic([[5] * 20000])
    full = build_pairs(corpus, 67, "sop", np.random.default_rng(0), short_seq_prob=0.0)
    lengths = (full.a1 - full.a0) + (full.b1 - full.b0)
    assert (lengths[:-1] == 64).all()  # every sequence but the document's last is filled
    mixed = build_pairs(corpus, 67, "sop", np.random.default_rng(0), short_seq_prob=0.1)
    lengths = (mixed.a1 - mixed.a0) + (mixed.b1 - mixed.b0)
    share = (lengths < 60).mean()
    assert 0.065 < share < 0.105  # a target uniform in [2, 64] for 10% of the sequences: 54/63 of them < 60


def test_no_next_sentence_packs_one_segment_and_bad_settings_name_the_option():
    corpus = _synthetic(_docs(5, 30))
    pairs = build_pairs(corpus, 32, "none", np.random.default_rng(0))
    assert (pairs.b1 == pairs.b0).all() and (pairs.a1 - pairs.a0 <= 30).all() and not pairs.label.any()
    with pytest.raises(OptionError, match="--next-sentence must be one of nsp, sop, none"):
        build_pairs(corpus, 32, "mlm", np.random.default_rng(0))
    with pytest.raises(OptionError, match="--max-len must be >= 5"):
        build_pairs(corpus, 4, "nsp", np.random.default_rng(0))


def _batches(corpus, **kw) -> PretrainingBatches:
    args = {"max_len": 48, "specials": SPECIALS, "vocab_size": 1000, "next_sentence": "nsp", "seed": 3}
    return PretrainingBatches(corpus, 16, **{**args, **kw})


def _original(batch) -> torch.Tensor:
    labels = batch["mlm_labels"]
    return torch.where(labels != IGNORE_INDEX, labels, batch["input_ids"])


def test_batches_place_cls_sep_segments_and_padding():
    source = _batches(_synthetic(_docs(20, 20)))
    for _ in range(10):
        batch, reset = source.next_batch()
        assert not reset and set(batch) == {"input_ids", "token_type_ids", "attention_mask", "mlm_labels",
                                            "nsp_labels"}
        ids, types, mask = _original(batch), batch["token_type_ids"], batch["attention_mask"]
        assert ids.shape[1] <= 48 and (ids[:, 0] == SPECIALS.cls).all()
        for row in range(ids.shape[0]):
            n = int(mask[row].sum())
            assert mask[row, :n].all() and (ids[row, n:] == SPECIALS.pad).all() and (types[row, n:] == 0).all()
            seps = (ids[row] == SPECIALS.sep).nonzero().flatten().tolist()
            assert len(seps) == 2 and seps[1] == n - 1
            assert (types[row, :seps[0] + 1] == 0).all() and (types[row, seps[0] + 1:n] == 1).all()


# -- masking ----------------------------------------------------------------------------------------

def test_masking_statistics_over_many_draws():
    source = _batches(_synthetic(_docs(30, 30)), max_len=64)
    selected = candidates = masked = replaced = kept = 0
    for _ in range(150):
        batch, _ = source.next_batch()
        ids, inputs, labels = _original(batch), batch["input_ids"], batch["mlm_labels"]
        chosen = labels != IGNORE_INDEX
        special = (ids == SPECIALS.cls) | (ids == SPECIALS.sep) | (batch["attention_mask"] == 0)
        assert not (chosen & special).any()  # [CLS], [SEP] and padding are never selected
        assert (chosen.sum(1) >= 1).all()
        selected += int(chosen.sum())
        candidates += int((~special).sum())
        masked += int((chosen & (inputs == SPECIALS.mask)).sum())
        kept += int((chosen & (inputs == ids)).sum())
        replaced += int((chosen & (inputs != ids) & (inputs != SPECIALS.mask)).sum())
        assert not ((inputs == SPECIALS.mask) & ~chosen).any()
        swapped = inputs[chosen & (inputs != SPECIALS.mask)]
        assert not np.isin(swapped.numpy(), [SPECIALS.pad, SPECIALS.cls, SPECIALS.sep]).any()  # nor random ones
    assert abs(selected / candidates - 0.15) < 0.005
    assert abs(masked / selected - 0.8) < 0.015
    assert abs(replaced / selected - 0.1) < 0.01 and abs(kept / selected - 0.1) < 0.01


def test_mlm_prob_sets_the_share():
    corpus = _synthetic(_docs(20, 30))
    batch, _ = _batches(corpus, mlm_prob=0.4, max_len=128).next_batch()
    chosen = (batch["mlm_labels"] != IGNORE_INDEX).sum(1).float()
    real = batch["attention_mask"].sum(1).float() - 3
    assert torch.allclose(chosen, torch.round(real * 0.4), atol=0.51)


def test_whole_word_masking_takes_every_piece_of_a_word(tmp_path, wordpiece):
    (tmp_path / "c.txt").write_text("\n\n".join("\n".join(_sentences(10, seed=d)) for d in range(8)) + "\n")
    data = prepare_bert_data([str(tmp_path / "c.txt")], tmp_path / "run", tokenizer=wordpiece, val_fraction=0)
    pieces = continuation_ids(wordpiece)
    assert pieces.any() and not pieces[list(data.specials.to_dict().values())].any()
    source = PretrainingBatches(data.train, 8, max_len=64, specials=data.specials, vocab_size=data.vocab_size,
                                continuation=pieces, seed=1)
    selected = candidates = words_split = 0
    for _ in range(40):
        batch, _ = source.next_batch()
        ids = _original(batch).numpy()
        chosen = (batch["mlm_labels"] != IGNORE_INDEX).numpy()
        joined = pieces[ids][:, 1:] & ~np.isin(ids[:, :-1], [data.specials.cls, data.specials.sep])
        words_split += int((joined & (chosen[:, 1:] != chosen[:, :-1])).sum())
        selected += int(chosen.sum())
        candidates += int(batch["attention_mask"].sum()) - 3 * ids.shape[0]
    assert words_split == 0
    assert 0.12 < selected / candidates < 0.16  # whole words fill each row's count, never past it


def test_mask_tokens_never_selects_non_candidates():
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 50, (32, 40))
    candidates = rng.random((32, 40)) < 0.5
    inputs, labels = mask_tokens(ids, candidates, rng, mask_id=4, replacements=np.arange(5, 50))
    assert ((labels != IGNORE_INDEX) <= candidates).all()
    assert (inputs[~candidates] == ids[~candidates]).all()
    assert ((labels != IGNORE_INDEX).sum(1) == np.maximum(1, np.rint(candidates.sum(1) * 0.15))).all()


# -- determinism ------------------------------------------------------------------------------------

def test_a_resumed_source_continues_with_the_same_batches_across_epochs():
    corpus = _synthetic(_docs(6, 20))
    first = _batches(corpus)
    per_epoch = first.batches_per_epoch
    drawn = []
    while first.epoch < 2 or first.position < 3:
        drawn.append(first.next_batch()[0])
    second = _batches(corpus)
    for _ in range(per_epoch + 1):
        second.next_batch()
    state = second.state_dict()
    third = _batches(corpus)
    third.load_state_dict(state)
    for expected in drawn[per_epoch + 1:]:
        batch, _ = third.next_batch()
        assert all(torch.equal(batch[k], expected[k]) for k in expected)
    # each epoch builds its own pairs and masks: the first batches of two epochs differ
    assert not torch.equal(drawn[0]["input_ids"][:, :5], drawn[per_epoch]["input_ids"][:, :5])


def test_evaluation_batches_are_the_same_on_every_pass():
    corpus = _synthetic(_docs(6, 20))
    one = list(_batches(corpus, seed=0).iter_eval())
    two = list(_batches(corpus, seed=0).iter_eval())
    assert len(one) == len(two) > 1
    assert all(torch.equal(a[k], b[k]) for a, b in zip(one, two, strict=True) for k in a)
    other = list(_batches(corpus, seed=1).iter_eval())
    assert not torch.equal(one[0]["mlm_labels"], other[0]["mlm_labels"])
