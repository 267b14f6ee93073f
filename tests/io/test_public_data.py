"""The public-data manifest and the split rules that rebuild its files from upstream (offline: sources
are local files read through file:// URLs; no test touches the network)."""

import hashlib
import io
import tarfile
import zipfile

import pytest

from dlnlp.errors import UsageError
from dlnlp.io import public_data
from dlnlp.io.public_data import DataError, DataFile, Dataset
from tests.conftest import shared_path, shared_root

MANIFEST = public_data.load_manifest()


@pytest.fixture(autouse=True)
def no_mirror(monkeypatch):
    """These tests build from (local) upstream sources: a mirror in the environment must not stand in."""
    monkeypatch.delenv("DLNLP_DATA_MIRROR", raising=False)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_manifest_names_every_public_corpus_with_a_source_licence_and_rule():
    assert set(MANIFEST) == {
        "tinyshakespeare",
        "brown",
        "abc-news",
        "embed-train",
        "wikitext-2",
        "mr",
        "conll2000",
        "questions-words",
        "wordsim353",
    }
    for dataset in MANIFEST.values():
        assert dataset.licence and dataset.split and dataset.builder in public_data.BUILDERS
        assert dataset.sources or dataset.requires, dataset.name
        assert all(source.startswith("https://") for source in dataset.sources)
        for file in dataset.files:
            assert len(file.sha256) == 64 and file.size > 0 and file.path.startswith(("corpora/", "eval/"))


def test_the_manifest_matches_the_shared_files():
    relatives = [f.path for d in MANIFEST.values() for f in d.files]
    root = shared_root(*relatives)
    for relative in relatives:
        file = next(f for d in MANIFEST.values() for f in d.files if f.path == relative)
        assert (root / relative).stat().st_size == file.size, relative
        assert public_data.sha256_file(root / relative) == file.sha256, relative


def test_names_select_datasets_single_files_or_paths():
    assert [f.path for _, files in public_data.select(["brown"], MANIFEST) for f in files] == [
        "corpora/brown/train.txt",
        "corpora/brown/valid.txt",
    ]
    ((dataset, files),) = public_data.select(["mr/dev"], MANIFEST)
    assert dataset.name == "mr" and [f.path for f in files] == ["corpora/mr/dev.tsv"]
    ((dataset, files),) = public_data.select(["eval/wordsim353.tsv"], MANIFEST)
    assert dataset.name == "wordsim353"
    with pytest.raises(UsageError, match="unknown dataset 'brown/test'.*brown/train"):
        public_data.select(["brown/test"], MANIFEST)


def _brown_ids(n: int) -> list[str]:
    """Brown-like file ids in sorted order (ca01 .. cr34: its 15 genre letters, 34 files each)."""
    return [f"c{letter}{number:02d}" for letter in "abcdefghjklmnpr" for number in range(1, 35)][:n]


def test_brown_rule_holds_out_every_20th_file_and_strips_tags():
    files = {
        fileid: f"\n\n\tfile/nn {i}/cd ./.\n\n\tsecond/ap 1/2/cd line/nn\n"
        for i, fileid in enumerate(_brown_ids(45))
    }
    train, valid = public_data.split_brown(dict(reversed(files.items())))  # the order given does not matter
    valid_ids = [int(line.split()[1]) for line in valid.splitlines()[::2]]
    train_ids = [int(line.split()[1]) for line in train.splitlines()[::2]]
    assert valid_ids == [1, 21, 41]
    assert train_ids == [i for i in range(45) if i % 20 not in (0, 1)]  # 0, 20, 40: the held-out test split
    assert valid.splitlines()[:2] == ["file 1 .", "second 1/2 line"]  # the last '/' splits word from tag


def test_brown_rule_matches_the_shared_split_sizes():
    # NLTK's Brown: 57,340 sentences in 500 files; 25 of them are valid, 25 held out.
    train = shared_path("corpora/brown/train.txt").read_text(encoding="utf-8").count("\n")
    valid = shared_path("corpora/brown/valid.txt").read_text(encoding="utf-8").count("\n")
    assert 2_000 < valid < 3_500 and train + valid + 2_000 < 57_340 < train + valid + 3_500


def test_embed_rule_rebuilds_embed_train_from_brown_and_abc():
    lines = []
    for relative in ("corpora/brown/train.txt", "corpora/abc-news.txt"):
        with open(
            shared_path(relative), encoding="utf-8"
        ) as handle:  # lines end at "\n" only (ABC holds a U+0085)
            lines.extend(public_data.embed_lines(handle))
    (file,) = MANIFEST["embed-train"].files
    assert sha("".join(line + "\n" for line in lines).encode()) == file.sha256


def test_embed_rule_tokens():
    assert list(public_data.embed_lines(["Don't STOP -- 42 times!", "a", "x, y", "..."])) == [
        "don't stop 42 times",
        "x y",
    ]


def _labels(relative: str) -> list[int]:
    return [
        int(line.rsplit("\t", 1)[1])
        for line in shared_path(relative).read_text(encoding="utf-8").splitlines()[1:]
    ]


def test_mr_rule_reproduces_the_shared_shuffle():
    # The seed-13 shuffle of 5,331 positives then 5,331 negatives puts the labels in the shared files' order.
    train, dev = public_data.split_mr([f"p{i} " for i in range(5331)], [f"n{i}" for i in range(5331)])
    assert [int(row.split("\t")[1]) for row in train.splitlines()[1:]] == _labels("corpora/mr/train.tsv")
    assert [int(row.split("\t")[1]) for row in dev.splitlines()[1:]] == _labels("corpora/mr/dev.tsv")
    assert train.startswith("text\tlabel\n") and "p1 \t" not in train  # stripped
    texts = [row.split("\t")[0] for part in (train, dev) for row in part.splitlines()[1:]]
    assert len(texts) == len(set(texts)) == 9596  # 1,066 held out, the rest each once


def test_conll_rule_splits_off_the_last_1000_sentences():
    train = shared_path("corpora/conll2000/train.txt").read_text(encoding="utf-8")
    dev = shared_path("corpora/conll2000/dev.txt").read_text(encoding="utf-8")
    rebuilt = public_data.split_conll(train + dev)
    assert [sha(part.encode()) for part in rebuilt] == [f.sha256 for f in MANIFEST["conll2000"].files]
    small_train, small_dev = public_data.split_conll("a A B-NP\n\nb B O\nc C O\n\n\nd D O\n", dev_sentences=2)
    assert (small_train, small_dev) == ("a A B-NP\n\n", "b B O\nc C O\n\nd D O\n\n")
    with pytest.raises(DataError, match="fewer than"):
        public_data.split_conll("a A O\n", dev_sentences=1)


def test_abc_rule_decodes_rural_as_utf8_and_science_as_latin1():
    assert public_data.abc_text("Côte\r\n".encode(), "Müller\n".encode("latin-1")) == "Côte\nMüller\n"


def _zip(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _dataset(name, builder, files: dict[str, bytes], sources, requires=()) -> Dataset:
    return Dataset(
        name=name,
        description="",
        files=tuple(DataFile(p, sha(d), len(d)) for p, d in files.items()),
        sources=tuple(sources),
        licence="test",
        split="test",
        builder=builder,
        requires=tuple(requires),
    )


def test_upstream_build_installs_only_verified_files(tmp_path):
    brown = {f"brown/{fileid}": f"\tw/nn {i}/cd\n".encode() for i, fileid in enumerate(_brown_ids(500))}
    brown["brown/README"] = b"not a text file"
    archive = _zip(tmp_path / "brown.zip", brown)
    train, valid = public_data.split_brown(
        {k.split("/")[1]: v.decode() for k, v in brown.items() if "README" not in k}
    )
    good = _dataset(
        "brown",
        "brown",
        {"corpora/brown/train.txt": train.encode(), "corpora/brown/valid.txt": valid.encode()},
        [archive.as_uri()],
    )
    root = tmp_path / "cache"
    installed = public_data.get(["brown"], root=root, manifest={"brown": good})
    assert [p.read_text() for p in installed] == [train, valid]
    assert (root / ".sources" / "brown" / "brown.zip").is_file()  # kept for reruns

    wrong = _dataset(
        "brown",
        "brown",
        {"corpora/brown/train.txt": b"other\n", "corpora/brown/valid.txt": valid.encode()},
        [archive.as_uri()],
    )
    root2 = tmp_path / "cache2"
    with pytest.raises(
        DataError, match="built from upstream differ.*corpora/brown/train.txt.*nothing was installed"
    ):
        public_data.get(["brown"], root=root2, manifest={"brown": wrong})
    assert not (root2 / "corpora").exists()
    assert not (root2 / ".sources" / "brown").exists()  # not kept: the next run downloads it again


def test_upstream_sources_are_tried_in_order_and_archives_read(tmp_path):
    tar_path = tmp_path / "rt.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tf:
        for name, text in (
            ("rt-polaritydata/rt-polarity.pos", "good \n"),
            ("rt-polaritydata/rt-polarity.neg", "bad\n"),
        ):
            data = text.encode("latin-1")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    train, dev = public_data.split_mr(["good "], ["bad"])
    dataset = _dataset(
        "mr",
        "mr",
        {"corpora/mr/train.tsv": train.encode(), "corpora/mr/dev.tsv": dev.encode()},
        [(tmp_path / "missing.tar.gz").as_uri(), tar_path.as_uri()],
    )
    paths = public_data.get(["mr"], root=tmp_path / "c", manifest={"mr": dataset})
    assert set(paths[0].read_text().splitlines()) == {"text\tlabel", "good\t1", "bad\t0"}  # the second source

    nowhere = _dataset("q", "copy", {"eval/q.txt": b"q\n"}, [(tmp_path / "none.txt").as_uri()])
    with pytest.raises(DataError, match="no source could be downloaded.*DLNLP_DATA_MIRROR"):
        public_data.get(["q"], root=tmp_path / "c", manifest={"q": nowhere})


def test_a_derived_dataset_gets_its_inputs_first(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("The cat sat.\nA\n")
    brown = _dataset("brown", "copy", {"corpora/brown/train.txt": b"The cat sat.\nA\n"}, [source.as_uri()])
    abc = _dataset("abc-news", "copy", {"corpora/abc-news.txt": b"The cat sat.\nA\n"}, [source.as_uri()])
    embed = _dataset(
        "embed-train",
        "embed-train",
        {"corpora/embed-train.txt": b"the cat sat\nthe cat sat\n"},
        [],
        requires=["brown", "abc-news"],
    )
    manifest = {"brown": brown, "abc-news": abc, "embed-train": embed}
    (path,) = public_data.get(["embed-train"], root=tmp_path / "c", manifest=manifest)
    assert path.read_text() == "the cat sat\nthe cat sat\n"
    assert public_data.paths(["brown", "abc-news"], root=tmp_path / "c", manifest=manifest)
