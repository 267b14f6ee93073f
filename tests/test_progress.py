import io

from dlnlp import progress


def test_plain_log_lines_when_not_a_terminal(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0.0)
    with progress.Progress("training", total=4, unit="step", rate_unit="tok", stream=stream) as bar:
        for _ in range(4):
            bar.update(1, rate=100, loss=1.5)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 5  # one per update plus the final line
    assert lines[-1].startswith("dlnlp: training: step 4/4 (100%)")
    assert "loss=1.5" in lines[-1] and "tok/s" in lines[-1]


def test_quiet_prints_nothing():
    stream = io.StringIO()
    with progress.Progress("x", total=2, quiet=True, stream=stream) as bar:
        bar.update(2)
    assert stream.getvalue() == ""
