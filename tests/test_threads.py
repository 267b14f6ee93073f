"""``--threads`` / ``DLNLP_THREADS`` / the default thread count (dlnlp.threads)."""

from __future__ import annotations

import os

import pytest

from dlnlp import threads
from dlnlp.errors import OptionError
from tests.conftest import run_main


def test_precedence_explicit_then_environment_then_openmp_then_cores(monkeypatch):
    monkeypatch.delenv("DLNLP_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "physical_cores", lambda: 8)
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: 0)
    assert threads.resolve_threads() == 8
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: 3)
    assert threads.resolve_threads() == 5  # the cores other busy processes leave
    monkeypatch.setattr(threads, "physical_cores", lambda: 1)
    assert threads.resolve_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3,2")
    assert threads.resolve_threads() == 3
    monkeypatch.setenv("DLNLP_THREADS", "5")
    assert threads.resolve_threads() == 5
    assert threads.resolve_threads(2) == 2


def test_bad_values_name_their_source(monkeypatch):
    monkeypatch.setenv("DLNLP_THREADS", "many")
    with pytest.raises(OptionError, match="DLNLP_THREADS must be a whole number >= 1, got 'many'"):
        threads.resolve_threads()
    monkeypatch.delenv("DLNLP_THREADS")
    code, _, err = run_main("gpt", "eval", "nowhere", "--threads", "0")
    assert code == 2 and "--threads" in err


def test_physical_cores_counts_cores_not_hyperthreads():
    import os

    assert 1 <= threads.physical_cores() <= len(os.sched_getaffinity(0))


def test_configure_sets_torch(monkeypatch):
    import torch

    before = torch.get_num_threads()
    try:
        assert threads.configure_threads(1) == 1 and threads.current_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_busy_elsewhere_counts_a_cpu_bound_process():
    import subprocess
    import sys
    import time

    if not os.path.exists("/proc/stat"):
        pytest.skip("needs Linux /proc/stat")
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        # the spinner is runnable in every sample (other processes may add to it)
        assert threads.busy_elsewhere(samples=5, interval=0.01) >= 1
    finally:
        spinner.kill()
        spinner.wait()
