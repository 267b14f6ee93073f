import gzip
import json

import pytest

from dlnlp.errors import InputError
from dlnlp.io.corpus import CorpusOptions
from dlnlp.io.labeled import Example, LabelMap, Sentence, read_conll, read_labeled
from tests.conftest import shared_path


def pairs(examples):
    return [(e.text, e.label) for e in examples]


def write(path, text):
    path.write_bytes(text.encode("utf-8"))
    return str(path)


# --- TSV / CSV ---------------------------------------------------------------------------------------


def test_tsv_with_header_reads_named_columns_in_any_order(tmp_path):
    path = write(tmp_path / "d.tsv", "label\tid\ttext\npos\t1\tgood film\nneg\t2\tbad film\n")
    examples = list(read_labeled(path))
    assert pairs(examples) == [("good film", "pos"), ("bad film", "neg")]
    assert examples[1].where == f"{path}:3"
    assert examples[0].text_pair is None


def test_tsv_without_header_takes_column_numbers_and_keeps_quotes(tmp_path):
    # A '"' at the start of a field is text in TSV (the MR corpus has such lines), not a quote.
    path = write(tmp_path / "d.tsv", '" sorority boys " was funnier\t0\nit is "fine"\t1\r\n\n')
    assert pairs(read_labeled(path, text_field="0", label_field=1)) == [
        ('" sorority boys " was funnier', "0"), ('it is "fine"', "1")]
    assert pairs(read_labeled(path, text_field=0, label_field=-1)) == pairs(read_labeled(path, "0", None, "1"))


def test_header_override_reads_a_header_file_by_column_number(tmp_path):
    path = write(tmp_path / "d.tsv", "sentence\tpolarity\ngood\t1\n")
    assert pairs(read_labeled(path, 0, None, 1, header=True)) == [("good", "1")]
    assert pairs(read_labeled(path, 0, None, 1)) == [("sentence", "polarity"), ("good", "1")]


def test_tsv_without_header_read_by_name_says_to_use_column_numbers(tmp_path):
    path = write(tmp_path / "d.tsv", "good film\t1\nbad film\t0\n")
    with pytest.raises(InputError, match=r"d\.tsv: no field 'text' \(fields: 'good film', '1'\); a file without "
                                         r"a header row takes column numbers, e\.g\. --text-field 0"):
        list(read_labeled(path))


def test_other_names_and_compressed_files_read_as_tsv(tmp_path):
    txt = write(tmp_path / "d.txt", "text\tlabel\na\tx\n")
    gz = tmp_path / "d.tsv.gz"
    with gzip.open(gz, "wb") as handle:
        handle.write(b"text\tlabel\nb\ty\n")
    assert pairs(read_labeled([txt, str(gz)])) == [("a", "x"), ("b", "y")]


def test_csv_with_quoted_commas_quotes_and_line_breaks(tmp_path):
    path = write(tmp_path / "d.csv", '\ufefftext,label\n"a, b",1\n"say ""hi""",0\n"two\nlines",1\nplain,0\n')
    examples = list(read_labeled(path))
    assert pairs(examples) == [("a, b", "1"), ('say "hi"', "0"), ("two\nlines", "1"), ("plain", "0")]
    assert [e.where.rsplit(":", 1)[1] for e in examples] == ["2", "3", "4", "6"]


def test_pair_field(tmp_path):
    path = write(tmp_path / "d.tsv", "premise\thypothesis\tlabel\nA man sleeps.\tA person rests.\tentailment\n")
    [example] = read_labeled(path, "premise", "hypothesis")
    assert example == Example("A man sleeps.", "entailment", "A person rests.")


def test_fields_from_the_corpus_options_and_unlabeled_reading(tmp_path):
    path = write(tmp_path / "d.tsv", "s\ty\nhello\tgreet\n")
    options = CorpusOptions(text_field="s", label_field="y")
    assert pairs(read_labeled(path, options=options)) == [("hello", "greet")]
    assert pairs(read_labeled(path, options=options, labeled=False)) == [("hello", None)]
    assert pairs(read_labeled(path, text_field="s", labeled=False)) == [("hello", None)]


def test_ragged_rows_name_file_and_line(tmp_path):
    path = write(tmp_path / "d.tsv", "text\tlabel\na\t1\nb\tc\t0\n")
    with pytest.raises(InputError, match=r"d\.tsv:3: expected 2 columns, got 3 \(a tab inside a field\?\)"):
        list(read_labeled(path))
    short = write(tmp_path / "e.csv", "text,label\na,1\n\nb\n")
    with pytest.raises(InputError, match=r"e\.csv:4: expected 2 columns, got 1$"):
        list(read_labeled(short))


def test_column_number_out_of_range(tmp_path):
    path = write(tmp_path / "d.tsv", "a\t1\n")
    with pytest.raises(InputError, match=r"d\.tsv: no column 2 \(the rows have 2 columns"):
        list(read_labeled(path, 0, None, 2))


def test_empty_label_names_file_line_and_field(tmp_path):
    path = write(tmp_path / "d.tsv", "text\tlabel\na\t1\nb\t \n")
    with pytest.raises(InputError, match=r"d\.tsv:3: empty label \(field 'label'\)"):
        list(read_labeled(path))


def test_invalid_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_bytes(b"text\tlabel\nok\t1\nbad \xff\t0\n")
    with pytest.raises(InputError, match=r"d\.tsv:3: not valid UTF-8"):
        list(read_labeled(str(path)))
    assert pairs(read_labeled(str(path), options=CorpusOptions(encoding_errors="replace")))[1] == ("bad \ufffd", "0")


def test_invalid_csv_and_empty_input(tmp_path):
    bad = write(tmp_path / "d.csv", 'text,label\n"open,1\n')
    with pytest.raises(InputError, match=r"d\.csv:\d+: not valid CSV"):
        list(read_labeled(bad))
    header_only = write(tmp_path / "e.tsv", "text\tlabel\n")
    with pytest.raises(InputError, match=r"e\.tsv: the input is empty"):
        list(read_labeled(header_only))
    with pytest.raises(InputError, match="no such file"):
        list(read_labeled(str(tmp_path / "missing.tsv")))


# --- JSON lines, parquet, HF datasets ----------------------------------------------------------------


def test_jsonl_values_become_strings(tmp_path):
    rows = [{"text": "a", "label": 1, "q": "x"}, {"text": "b", "label": True, "q": "y"}, {"text": "c", "label": "neg",
                                                                                        "q": "z"}]
    path = write(tmp_path / "d.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    examples = list(read_labeled(path, pair_field="q"))
    assert [(e.text, e.text_pair, e.label) for e in examples] == [("a", "x", "1"), ("b", "y", "true"),
                                                                  ("c", "z", "neg")]
    assert examples[2].where == f"{path}:3"


def test_json_array_file(tmp_path):
    path = write(tmp_path / "d.json", json.dumps([{"text": "a", "label": 0}, {"text": "b", "label": 1}], indent=1))
    assert pairs(read_labeled(path)) == [("a", "0"), ("b", "1")]


def test_jsonl_errors_name_the_line(tmp_path):
    missing = write(tmp_path / "m.jsonl", '{"text": "a", "label": 0}\n{"text": "b", "y": 1}\n')
    with pytest.raises(InputError, match=r"m\.jsonl:2: no field 'label' \(fields: 'text', 'y'\)$"):
        list(read_labeled(missing))
    null = write(tmp_path / "n.jsonl", '{"text": "a", "label": null}\n')
    with pytest.raises(InputError, match=r"n\.jsonl:1: empty label"):
        list(read_labeled(null))
    broken = write(tmp_path / "b.jsonl", '{"text": "a", "label": 0}\n{"text": \n')
    with pytest.raises(InputError, match=r"b\.jsonl:2: not valid JSON"):
        list(read_labeled(broken))
    listed = write(tmp_path / "l.jsonl", '{"text": "a", "label": [0, 1]}\n')
    with pytest.raises(InputError, match=r"l\.jsonl:1: label field 'label' is a list"):
        list(read_labeled(listed))


def test_parquet_by_name_and_number(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"sentence": ["one", "two", "three"], "y": [1, 0, 1]}), path)
    assert pairs(read_labeled(str(path), "sentence", None, "y")) == [("one", "1"), ("two", "0"), ("three", "1")]
    assert pairs(read_labeled(str(path), 0, None, 1)) == pairs(read_labeled(str(path), "sentence", None, "y"))
    with pytest.raises(InputError, match=r"d\.parquet: no field 'label' \(fields: 'sentence', 'y'\)$"):
        list(read_labeled(str(path), "sentence"))
    nulls = tmp_path / "n.parquet"
    pq.write_table(pa.table({"text": ["a", "b"], "label": ["x", None]}), nulls)
    with pytest.raises(InputError, match=r"n\.parquet: row 2: empty label"):
        list(read_labeled(str(nulls)))


def test_hf_dataset_object(tmp_path):
    datasets = pytest.importorskip("datasets")
    dataset = datasets.Dataset.from_dict({"sentence1": ["a", "b"], "sentence2": ["c", "d"], "label": [0, 1]})
    examples = list(read_labeled(dataset, "sentence1", "sentence2"))
    assert [(e.text, e.text_pair, e.label) for e in examples] == [("a", "c", "0"), ("b", "d", "1")]
    assert pairs(read_labeled(dataset, 1, None, -1)) == [("c", "0"), ("d", "1")]
    with pytest.raises(InputError, match=r"no field 'text' \(fields: 'sentence1', 'sentence2', 'label'\)$"):
        list(read_labeled(dataset))
    with pytest.raises(InputError, match="several splits"):
        list(read_labeled(datasets.DatasetDict(train=dataset, test=dataset), "sentence1"))
    assert pairs(read_labeled([{"text": "x", "label": "y"}])) == [("x", "y")]


# --- label map -----------------------------------------------------------------------------------------


def test_label_map_is_sorted_and_independent_of_order():
    forward = LabelMap(["neg", "pos", "neg", "neutral"])
    assert forward.labels == ("neg", "neutral", "pos")
    assert forward == LabelMap(["pos", "neutral", "neg"])
    assert [forward.id(label) for label in ("neg", "neutral", "pos")] == [0, 1, 2]
    assert forward.label(2) == "pos" and len(forward) == 3 and "pos" in forward
    assert LabelMap(forward.to_list()) == forward


def test_label_map_sorts_integer_labels_numerically():
    numbers = LabelMap(["10", "2", "0", "1"])
    assert numbers.labels == ("0", "1", "2", "10")
    assert numbers.id("10") == 3


def test_label_map_names_an_unknown_label_and_where():
    labels = LabelMap.from_examples([Example("a", "x"), Example("b", "y"), Example("c", None)])
    assert labels.labels == ("x", "y")
    with pytest.raises(InputError, match=r"dev\.tsv:7: label 'z' is not one of the 2 known labels \('x', 'y'\)"):
        labels.id("z", "dev.tsv:7")
    with pytest.raises(InputError, match="no labels"):
        LabelMap([])


# --- CoNLL column files ----------------------------------------------------------------------------------

CONLL = """-DOCSTART- -X- O

Confidence NN B-NP
in IN B-PP
the DT B-NP
pound NN I-NP

# # B-NP
. . O
"""


def test_conll_reads_sentences_with_the_chosen_tag_column(tmp_path):
    path = write(tmp_path / "c.txt", CONLL)
    sentences = list(read_conll(path))
    assert sentences == [Sentence(["Confidence", "in", "the", "pound"], ["B-NP", "B-PP", "B-NP", "I-NP"]),
                         Sentence(["#", "."], ["B-NP", "O"])]  # '#' is a token, not a comment
    assert [s.where for s in sentences] == [f"{path}:3", f"{path}:8"]
    assert [s.tags for s in read_conll(path, tag_column=1)] == [["NN", "IN", "DT", "NN"], ["#", "."]]
    assert [s.tags for s in read_conll(path, tag_column=None)] == [None, None]
    assert LabelMap.from_examples(sentences).labels == ("B-NP", "B-PP", "I-NP", "O")


def test_conll_without_final_blank_line_and_tab_delimited(tmp_path):
    path = write(tmp_path / "c.tsv", "New York\tNNP\tB-LOC\nis\tVBZ\tO")
    assert list(read_conll(path, delimiter="\t")) == [Sentence(["New York", "is"], ["B-LOC", "O"])]


def test_conll_ragged_rows_name_file_and_line(tmp_path):
    path = write(tmp_path / "c.txt", "a DT B-NP\nb NN\n")
    with pytest.raises(InputError, match=r"c\.txt:2: expected 3 columns, got 2$"):
        list(read_conll(path))
    extra = write(tmp_path / "d.txt", "a DT B-NP\n\nNew York NNP B-NP\n")
    with pytest.raises(InputError, match=r"d\.txt:3: expected 3 columns, got 4$"):
        list(read_conll(extra))
    with pytest.raises(InputError, match=r"c\.txt:1: no tag column 3 \(the rows have 3 columns"):
        list(read_conll(path, tag_column=3))
    empty_tag = write(tmp_path / "e.tsv", "a\tDT\t\n")
    with pytest.raises(InputError, match=r"e\.tsv:1: empty tag \(column -1\)"):
        list(read_conll(empty_tag, delimiter="\t"))


def test_conll_invalid_utf8_and_empty(tmp_path):
    path = tmp_path / "c.txt"
    path.write_bytes(b"a DT B-NP\n\nb\xfe NN I-NP\n")
    with pytest.raises(InputError, match=r"c\.txt:3: not valid UTF-8"):
        list(read_conll(str(path)))
    blank = write(tmp_path / "b.txt", "-DOCSTART- -X- O\n\n\n")
    with pytest.raises(InputError, match="the input is empty"):
        list(read_conll(blank))


# --- the shared corpora ----------------------------------------------------------------------------------


def test_mr_dev_reads_1066_binary_examples():
    examples = list(read_labeled(str(shared_path("corpora/mr/dev.tsv"))))
    assert len(examples) == 1066
    labels = LabelMap.from_examples(examples)
    assert labels.labels == ("0", "1")
    assert all(e.text and e.text_pair is None for e in examples)
    assert any(e.text.startswith('" ') for e in examples)  # quotes kept as text, rows not merged


def test_conll2000_dev_reads_1000_sentences_with_bio_chunk_tags():
    sentences = list(read_conll(str(shared_path("corpora/conll2000/dev.txt"))))
    assert len(sentences) == 1000
    assert all(len(s.tokens) == len(s.tags) > 0 for s in sentences)
    tags = LabelMap.from_examples(sentences).labels
    assert "O" in tags and "B-NP" in tags and "I-NP" in tags
    assert all(tag == "O" or tag[:2] in ("B-", "I-") for tag in tags)


def test_stdin_reads_as_tsv(monkeypatch):
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"a\t1\nb\t0\n"), encoding="utf-8"))
    assert pairs(read_labeled("-", 0, None, 1)) == [("a", "1"), ("b", "0")]
