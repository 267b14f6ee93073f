"""conlleval's chunk F1 and the classification scores, against hand counts."""

import pytest

from dlnlp.evaluation.classification import chunks, classification_scores, confusion_table, span_scores


def test_chunks_follow_conlleval():
    assert chunks(["B-NP", "I-NP", "O", "B-VP", "B-NP"]) == {(0, 1, "NP"), (3, 3, "VP"), (4, 4, "NP")}
    # IOB1: an I- after O starts a chunk; a change of type starts another
    assert chunks(["I-NP", "I-NP", "I-VP", "O", "I-PP"]) == {(0, 1, "NP"), (2, 2, "VP"), (4, 4, "PP")}
    # B- after B- of the same type: two chunks; the sentence end closes the last one
    assert chunks(["B-NP", "B-NP", "I-NP"]) == {(0, 0, "NP"), (1, 2, "NP")}
    assert chunks(["O", "O"]) == set()


def test_span_f1_against_a_hand_count():
    gold = [["B-NP", "I-NP", "O", "B-VP", "B-NP"], ["B-PP", "B-NP", "I-NP"]]
    pred = [["B-NP", "I-NP", "O", "B-VP", "I-VP"], ["B-PP", "B-NP", "O"]]
    # gold: NP(0,1) VP(3) NP(4) | PP(0) NP(1,2) = 5; predicted: NP(0,1) VP(3,4) | PP(0) NP(1) = 4;
    # correct: NP(0,1) and PP(0) = 2
    s = span_scores(gold, pred)
    assert (s["gold_chunks"], s["predicted_chunks"], s["correct_chunks"]) == (5, 4, 2)
    assert s["precision"] == pytest.approx(2 / 4) and s["recall"] == pytest.approx(2 / 5)
    assert s["f1"] == pytest.approx(2 * 0.5 * 0.4 / 0.9)
    assert s["accuracy"] == pytest.approx(6 / 8)  # every token counts, O included
    assert s["per_type"]["NP"]["precision"] == pytest.approx(1 / 2) and s["per_type"]["NP"]["recall"] == \
        pytest.approx(1 / 3)
    assert s["per_type"]["VP"]["f1"] == 0 and s["per_type"]["PP"]["f1"] == 1


def test_span_scores_refuse_misaligned_input():
    with pytest.raises(ValueError, match="2 gold tags has 1 predicted"):
        span_scores([["O", "O"]], [["O"]])


def test_classification_scores_by_hand():
    s = classification_scores(["a", "a", "b", "b", "c"], ["a", "b", "b", "b", "a"], ["a", "b", "c"])
    assert s["accuracy"] == pytest.approx(3 / 5)
    assert s["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    f1_a = 2 * (1 / 2) * (1 / 2) / 1  # precision 1/2, recall 1/2
    f1_b = 2 * (2 / 3) * 1 / (2 / 3 + 1)
    assert s["macro_f1"] == pytest.approx((f1_a + f1_b + 0) / 3)
    table = confusion_table(s).splitlines()
    assert len(table) == 4 and table[1].split()[1:] == ["1", "1", "0"]
