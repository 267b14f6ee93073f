"""``bench/gpu.sh --tiny``: the GPU check script runs every section at small shapes on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, SHARED


@pytest.mark.slow
def test_gpu_check_tiny_runs_every_section(tmp_path):
    out = tmp_path / "gpu.json"
    env = {**os.environ, "DLNLP_SHARED": str(SHARED), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu.sh"), "--tiny", "--out", str(out)],
        capture_output=True,
        text=True,
        env={**env, "PYTHON": sys.executable},
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report == json.loads(result.stdout) and report["tiny"] is True
    for name in ("env", "cuda_tests", "gpt", "word2vec", "bert", "ddp", "lstm"):
        assert report[name]["status"] in ("ok", "skipped"), (name, report[name])
    assert report["gpt"]["steps"] == 12 and report["gpt"]["tokens_per_s"] > 0
    if report["ddp"]["status"] == "ok":  # two gloo processes reach the loss of one at the same global batch
        assert report["ddp"]["val_loss_difference"] < 1e-4
