"""Data-parallel training on the CPU: two gloo processes under torchrun against one process.

Two processes at ``--batch-size 4`` read the batches one process reads at ``--batch-size 8`` (see
``dlnlp/training/distributed.py``), so their loss curves agree to floating-point rounding. A rank
killed mid-run resumes to the same result; a run resumes at its own world size only.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_main

STEPS = 20
GPT = [
    "--layers",
    "2",
    "--heads",
    "2",
    "--dim",
    "16",
    "--block-size",
    "16",
    "--max-steps",
    str(STEPS),
    "--log-interval",
    "1",
    "--eval-interval",
    "5",
    "--eval-batches",
    "4",
    "--warmup",
    "2",
    "--lr",
    "3e-3",
    "--device",
    "cpu",
    "--json",
]

# Rank 1 of the killed run: the real CLI, killed (SIGKILL, no chance to clean up) right after the
# checkpoint of step 10 is written.
KILLED_AFTER_STEP_10 = """
import os, signal, sys
from dlnlp.training import trainer
save = trainer.Trainer._save
def _save(self, *args, **kwargs):
    save(self, *args, **kwargs)
    if self.step >= 10:
        os.kill(os.getpid(), signal.SIGKILL)
trainer.Trainer._save = _save
from dlnlp.cli.main import main
main(sys.argv[1:])
"""


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **extra}
    env.pop("DLNLP_DEBUG", None)
    return env


def _torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "dlnlp",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=300)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _losses(run: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def _summary(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, stdout  # rank 0 alone prints the results
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = random.Random(0)
    words = ["the", "cat", "dog", "sat", "ran", "on", "a", "mat", "log", "and", "saw", "big", "small", "red"]
    path = tmp_path_factory.mktemp("corpus") / "text.txt"
    path.write_text("".join(" ".join(rng.choices(words, k=8)) + ".\n" for _ in range(600)))
    return path


@pytest.fixture(scope="module")
def two_processes(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("ddp") / "gpt2proc"
    result = _torchrun("gpt", "train", str(corpus), "--out", str(out), "--batch-size", "4", *GPT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        "data parallel over 2 processes (gloo, cpu): --batch-size 4 per process, global batch 8"
        in result.stderr
    )
    return out, _summary(result.stdout)


def test_two_gloo_processes_train_as_one_process_with_the_same_global_batch(corpus, two_processes, tmp_path):
    ddp_dir, ddp = two_processes
    one_dir = tmp_path / "gpt1proc"
    one = subprocess.run(
        [
            sys.executable,
            "-m",
            "dlnlp",
            "gpt",
            "train",
            str(corpus),
            "--out",
            str(one_dir),
            "--batch-size",
            "8",
            *GPT,
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    single = _summary(one.stdout)
    curve_one, curve_two = _losses(one_dir), _losses(ddp_dir)
    assert sorted(curve_one) == sorted(curve_two) == list(range(1, STEPS + 1))
    assert curve_one[1] > curve_one[STEPS] + 0.3  # it learns: the comparison is not of flat curves
    for step in curve_one:
        assert curve_two[step] == pytest.approx(curve_one[step], rel=1e-5, abs=1e-5), step
    assert ddp["val_loss"] == pytest.approx(single["val_loss"], rel=1e-5)
    assert ddp["tokens"] == single["tokens"] == STEPS * 8 * 16  # tokens of both processes
    # one writer: the output is a model directory like any other, and its weights are rank 0's
    assert (ddp_dir / "model.safetensors").is_file() and not list(ddp_dir.parent.glob(".*.tmp"))


@pytest.mark.slow
def test_a_killed_rank_resumes_to_the_same_result(corpus, two_processes, tmp_path):
    reference_dir, reference = two_processes
    out = tmp_path / "killed"
    port = str(_free_port())
    args = ["gpt", "train", str(corpus), "--out", str(out), "--batch-size", "4", *GPT]
    procs = []
    for rank, head in ((0, ["-m", "dlnlp"]), (1, ["-c", KILLED_AFTER_STEP_10])):
        env = _env(
            RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=port
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, *head, *args],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        assert procs[1].wait(timeout=240) == -signal.SIGKILL
        deadline = (
            time.monotonic() + 60
        )  # rank 0 fails at its next collective; or we stop it as torchrun would
        while procs[0].poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
    assert procs[0].returncode != 0
    meta = json.loads((out / "checkpoint" / "trainer.json").read_text())
    assert meta["step"] == 10 and meta["world_size"] == 2 and len(meta["ranks"]) == 1

    resumed = _torchrun(
        "gpt", "train", "--resume", "--out", str(out), "--max-steps", str(STEPS), "--device", "cpu", "--json"
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = _summary(resumed.stdout)
    assert summary["steps"] == STEPS
    assert summary["val_loss"] == pytest.approx(reference["val_loss"], rel=1e-5)
    reference_curve, curve = _losses(reference_dir), _losses(out)
    assert sorted(curve) == list(range(1, STEPS + 1))  # each step logged once
    for step in range(11, STEPS + 1):
        assert curve[step] == pytest.approx(reference_curve[step], rel=1e-5, abs=1e-5), step


def test_a_run_resumes_only_at_its_world_size(two_processes):
    out, _ = two_processes
    before = (out / "checkpoint" / "trainer.json").read_text()
    code, _, err = run_main("gpt", "train", "--resume", "--out", out, "--max-steps", "25", "--device", "cpu")
    assert code == 1
    assert "written by 2 processes, this run has 1" in err and "--nproc-per-node 2" in err
    assert (out / "checkpoint" / "trainer.json").read_text() == before


def test_without_torchrun_everything_is_the_single_process_run():
    from dlnlp.training.distributed import DistContext, Strided

    single = DistContext()
    assert not single.enabled and single.is_main
    assert single.agree("max_time") == "max_time" and single.agree(None) is None
    assert single.sum(5) == 5 and single.reduce_eval(
        {"val_loss": 2.0, "val_tokens": 3, "val_batches": 1}
    ) == {"val_loss": 2.0, "val_tokens": 3, "val_batches": 1}
    batches = list(range(7))
    shares = [list(Strided(batches, rank, 3)) for rank in range(3)]
    assert shares == [[0, 3], [1, 4], [2, 5]]  # as many for each process; the last batch left out
    assert sorted(sum((list(Strided(batches, r, 3, whole=False)) for r in range(3)), [])) == batches
