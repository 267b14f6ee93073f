import json

import numpy as np
import pytest
import torch

from dlnlp.errors import DlnlpError, ModelDirError
from dlnlp.io.atomic import atomic_directory, atomic_open, atomic_write_text
from dlnlp.io.modeldir import (
    MetricsLog,
    RunOutput,
    load_weights,
    make_config,
    read_config,
    write_model_dir,
)


def test_atomic_open_refuses_overwrite_and_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "first")
    with pytest.raises(DlnlpError, match="exists; pass --force"):
        atomic_write_text(target, "second")
    with pytest.raises(RuntimeError), atomic_open(target, force=True) as handle:
        handle.write("partial")
        raise RuntimeError("boom")
    assert target.read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temporary left behind
    atomic_write_text(target, "second", force=True)
    assert target.read_text() == "second"


def test_outputs_get_the_usual_permissions_not_the_temporary_files_private_ones(tmp_path):
    import os
    import stat

    mask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "f.txt", "x")
        with atomic_directory(tmp_path / "d"):
            pass
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755


def test_atomic_directory_replaces_only_on_success(tmp_path):
    target = tmp_path / "run"
    with atomic_directory(target) as tmp:
        (tmp / "config.json").write_text("1")
    with pytest.raises(ValueError), atomic_directory(target, force=True) as tmp:
        (tmp / "config.json").write_text("2")
        raise ValueError
    assert (target / "config.json").read_text() == "1"
    with atomic_directory(target, force=True) as tmp:
        (tmp / "b").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_model_dir_round_trip_torch_and_numpy(tmp_path):
    weights = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(3)}
    config = make_config("toy", hidden=3)
    write_model_dir(tmp_path / "m", config, weights, files={"vocab.txt": "a\nb\n", "raw.bin": b"\x00\x01"})
    loaded = read_config(tmp_path / "m", kind="toy")
    assert loaded["hidden"] == 3 and loaded["format_version"] == 1 and "dlnlp_version" in loaded
    back = load_weights(tmp_path / "m")
    assert torch.equal(back["w"], weights["w"]) and torch.equal(back["b"], weights["b"])
    assert (tmp_path / "m" / "raw.bin").read_bytes() == b"\x00\x01"
    write_model_dir(tmp_path / "n", make_config("toy"), {"x": np.arange(4, dtype=np.int64)})
    assert load_weights(tmp_path / "n", framework="np")["x"].tolist() == [0, 1, 2, 3]


def test_read_config_errors(tmp_path):
    with pytest.raises(ModelDirError, match="no such model directory"):
        read_config(tmp_path / "none")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelDirError, match="is a file"):
        read_config(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelDirError, match="no config.json"):
        read_config(tmp_path / "empty")
    write_model_dir(tmp_path / "m", make_config("ngram"))
    with pytest.raises(ModelDirError, match="holds a 'ngram' model, expected 'gpt'"):
        read_config(tmp_path / "m", kind="gpt")
    config_path = tmp_path / "m" / "config.json"
    config_path.write_text(json.dumps({"kind": "ngram", "format_version": 99}))
    with pytest.raises(ModelDirError, match="format_version 99 is not supported"):
        read_config(tmp_path / "m", kind="ngram")
    config_path.write_text("{not json")
    with pytest.raises(ModelDirError, match="not valid JSON"):
        read_config(tmp_path / "m")


def test_weights_are_never_unpickled(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"\x80\x04not safetensors")
    with pytest.raises(ModelDirError, match="cannot read weights"):
        load_weights(tmp_path)


def test_run_output_stages_beside_the_target_and_swaps_at_commit(tmp_path):
    run = tmp_path / "run"
    with RunOutput(run) as output:
        assert output.path.parent == tmp_path and output.path.name.startswith(".run.")
        assert not run.exists()  # nothing at the target until the run commits
        (output.path / "config.json").write_text("{}")
        assert output.commit() == run
    assert (run / "config.json").is_file()
    with pytest.raises(DlnlpError, match="--force"):
        RunOutput(run)
    with pytest.raises(ModelDirError, match="no checkpoint"):
        RunOutput(run, resume=True)
    with pytest.raises(RuntimeError), RunOutput(run, force=True) as output:
        (output.path / "config.json").write_text('{"new": 1}')
        raise RuntimeError("failed before the first checkpoint")
    assert (run / "config.json").read_text() == "{}"  # the old output is kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging, no lock left
    with RunOutput(run, force=True) as output:
        (output.path / "config.json").write_text('{"new": 1}')
        output.commit()
    assert (run / "config.json").read_text() == '{"new": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    with MetricsLog(run) as metrics:
        metrics.write(step=1, loss=2.5)
        metrics.write(step=2, loss=2.0)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows == [{"loss": 2.5, "step": 1}, {"loss": 2.0, "step": 2}]
