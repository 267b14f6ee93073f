"""``dlnlp data list/get/path`` against mirrors on this machine: a local HTTP server (serving the shared
data, a tampered copy, or a download cut short) and a local directory. No test reaches the network."""

import functools
import http.server
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from dlnlp.io.public_data import load_manifest
from tests.conftest import run_main, shared_root

SMALL = ["eval/wordsim353.tsv", "eval/questions-words.txt"]


class Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        self.requests.append(self.path)


class CutShort(Handler):
    """Announces the whole file, sends half of it, and hangs up."""

    def do_GET(self):
        self.requests.append(self.path)
        data = (Path(self.directory) / self.path.lstrip("/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.close_connection = True


@contextmanager
def serve(directory: Path, handler: type = Handler) -> Iterator[tuple[str, list[str]]]:
    """An HTTP server on 127.0.0.1 (a free port) serving ``directory``: its URL and the paths requested."""
    requests: list[str] = []
    cls = type("Bound", (handler,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(cls, directory=str(directory))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("DLNLP_DATA_DIR", str(root))
    monkeypatch.delenv("DLNLP_DATA_MIRROR", raising=False)
    return root


def leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_get_from_an_http_mirror_verifies_and_prints_paths(cache):
    shared = shared_root(*SMALL)
    with serve(shared) as (url, requests):
        missing = run_main("data", "path", "wordsim353")
        assert missing.returncode == 1 and "dlnlp data get wordsim353" in missing.stderr
        result = run_main("data", "get", "wordsim353", "questions-words", "--mirror", url)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == [str(cache / relative) for relative in SMALL]
        for relative in SMALL:
            assert (cache / relative).read_bytes() == (shared / relative).read_bytes()
        assert "download eval/wordsim353.tsv" in result.stderr  # progress on stderr
        assert run_main("data", "path", "wordsim353").stdout == f"{cache / SMALL[0]}\n"
        fetched = len(requests)
        again = run_main(
            "data", "get", "wordsim353", "--mirror", url
        )  # cached and verified: not fetched again
        assert again.returncode == 0 and again.stdout == f"{cache / SMALL[0]}\n" and len(requests) == fetched
        assert run_main("data", "get", "wordsim353", "--mirror", url, "--force").returncode == 0
        assert len(requests) == fetched + 1


def test_a_tampered_file_is_refused_and_nothing_is_left(cache, tmp_path):
    shared = shared_root(SMALL[0])
    tampered = tmp_path / "tampered"
    (tampered / "eval").mkdir(parents=True)
    data = bytearray((shared / SMALL[0]).read_bytes())
    data[-5] ^= 1  # same size, one bit off
    (tampered / SMALL[0]).write_bytes(bytes(data))
    with serve(tampered) as (url, _):
        result = run_main("data", "get", "wordsim353", "--mirror", url)
    assert result.returncode == 1
    assert "SHA-256 mismatch" in result.stderr and "nothing was installed" in result.stderr
    assert leftovers(cache) == []
    assert run_main("data", "path", "wordsim353").returncode == 1


def test_a_download_cut_short_leaves_the_old_file(cache):
    shared = shared_root(SMALL[0])
    with serve(shared, CutShort) as (url, _):
        result = run_main("data", "get", "wordsim353", "--mirror", url)
        assert result.returncode == 1 and "incomplete download" in result.stderr
        assert leftovers(cache) == []
        assert run_main("data", "get", "wordsim353", "--mirror", str(shared)).returncode == 0
        before = (cache / SMALL[0]).read_bytes()
        assert run_main("data", "get", "wordsim353", "--mirror", url, "--force").returncode == 1
    assert leftovers(cache) == [SMALL[0]] and (cache / SMALL[0]).read_bytes() == before


def test_a_local_directory_mirror_from_the_environment(cache, monkeypatch):
    shared = shared_root("corpora/mr/train.tsv", "corpora/mr/dev.tsv")
    monkeypatch.setenv("DLNLP_DATA_MIRROR", str(shared))
    result = run_main("data", "get", "mr/dev")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{cache / 'corpora/mr/dev.tsv'}\n"
    assert run_main("data", "path", "mr/dev").stdout == result.stdout
    assert run_main("data", "path", "mr").returncode == 1  # the train file is not there yet
    monkeypatch.setenv("DLNLP_DATA_MIRROR", str(cache / "nowhere"))
    bad = run_main("data", "get", "mr")
    assert bad.returncode == 1 and "neither an http(s)/file URL nor a directory" in bad.stderr


def test_list_json_reports_what_is_cached(cache):
    shared = shared_root(SMALL[0])
    before = json.loads(run_main("data", "list", "--json").stdout)
    assert before["data_dir"] == str(cache)
    assert [d["name"] for d in before["datasets"]] == list(load_manifest())
    assert not any(d["present"] for d in before["datasets"])
    assert run_main("data", "get", "wordsim353", "--mirror", str(shared)).returncode == 0
    after = {d["name"]: d for d in json.loads(run_main("data", "list", "--json").stdout)["datasets"]}
    assert [name for name, d in after.items() if d["present"]] == ["wordsim353"]
    (file,) = after["wordsim353"]["files"]
    assert file["local_path"] == str(cache / SMALL[0]) and len(file["sha256"]) == 64
    assert all(d["licence"] and d["split"] for d in after.values())
    table = run_main("data", "list").stdout.splitlines()
    assert table[0].split()[:4] == ["NAME", "FILES", "SIZE", "CACHED"]
    assert any(line.startswith("wordsim353 ") and " yes " in line for line in table)


def test_unknown_names_are_usage_errors(cache):
    result = run_main("data", "get", "imagenet", "--mirror", str(cache))
    assert (
        result.returncode == 2
        and "unknown dataset 'imagenet'" in result.stderr
        and "brown/train" in result.stderr
    )


def test_shared_data_tests_run_from_the_cache_without_the_shared_directory(tmp_path):
    # A clone without ../shared: with DLNLP_DATA_MIRROR set, tests/conftest.py's shared_path fetches the
    # files into the data cache once and the tests that used to skip run.
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    shared = shared_root(
        "corpora/mr/train.tsv",
        "corpora/mr/dev.tsv",
        "corpora/conll2000/train.txt",
        "corpora/conll2000/dev.txt",
    )
    test = "tests/io/test_labeled.py::test_mr_dev_reads_1066_binary_examples"
    env = {
        **os.environ,
        "DLNLP_SHARED": str(tmp_path / "no-shared"),
        "DLNLP_DATA_DIR": str(tmp_path / "cache"),
    }
    env.pop("DLNLP_DATA_MIRROR", None)

    with serve(shared) as (url, requests):
        env["DLNLP_DATA_MIRROR"] = url
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            test,
            "tests/io/test_labeled.py::test_conll2000_dev_reads_1000_sentences_with_bio_chunk_tags",
        ]
        out = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300).stdout
    assert "2 passed" in out and "skipped" not in out, out
    assert sorted(requests) == [
        "/corpora/conll2000/dev.txt",
        "/corpora/conll2000/train.txt",
        "/corpora/mr/dev.tsv",
        "/corpora/mr/train.tsv",
    ]
    assert (tmp_path / "cache" / "corpora" / "mr" / "dev.tsv").is_file()


def test_an_upstream_source_cut_short_is_not_kept(tmp_path, monkeypatch):
    import hashlib

    from dlnlp.io import public_data

    monkeypatch.delenv("DLNLP_DATA_MIRROR", raising=False)
    (tmp_path / "up").mkdir()
    data = b"word\n" * 1000
    (tmp_path / "up" / "words.txt").write_bytes(data)
    file = public_data.DataFile("eval/words.txt", hashlib.sha256(data).hexdigest(), len(data))
    with serve(tmp_path / "up", CutShort) as (url, _):
        dataset = public_data.Dataset("words", "", (file,), (f"{url}/words.txt",), "test", "test", "copy")
        with pytest.raises(public_data.DataError, match="no source could be downloaded.*incomplete download"):
            public_data.get(["words"], root=tmp_path / "cache", manifest={"words": dataset})
    assert leftovers(tmp_path / "cache") == []
