"""How many CPU threads Torch computes with: ``--threads N``, ``DLNLP_THREADS``, or a default that does
not oversubscribe the machine. Decided once per process, before Torch starts working.

The default is the number of physical cores this process may run on (hyperthreads share a core's
arithmetic units, so a second thread per core mostly adds synchronization), or ``OMP_NUM_THREADS``
when it is set, as every OpenMP program reads it. Inter-op threads (parallel *independent* ops, which
the small eager models here hardly have) are kept at 1-2.

OpenMP worker threads spin while they wait for the next parallel region. On a machine whose cores are
busy with another process, spinning threads take turns with the process that holds the core, and
each small op of a training step waits for its slowest thread: the issue behind this module measured
a GPT training 3-5x slower at two threads than at one under such load. Before Torch is imported this
module therefore bounds the spinning (``GOMP_SPINCOUNT``, read by the GNU OpenMP runtime Torch ships
with, and ``KMP_BLOCKTIME`` for Intel's), unless the user set those variables or ``OMP_WAIT_POLICY``;
``bench/threads.py`` measures the effect. Both are read when the runtime loads, so a process that
imported Torch before calling :func:`configure_threads` keeps its runtime's settings.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

ENV = "DLNLP_THREADS"
MAX_INTEROP_THREADS = 2
# Spin iterations before a waiting OpenMP thread sleeps (libgomp's default is 300,000, about a
# millisecond here, which is longer than most ops of a small model's step); see bench/threads.py.
SPIN_COUNT = "10000"


def _affinity() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return list(range(os.cpu_count() or 1))


def physical_cores() -> int:
    """Distinct physical cores among the CPUs this process may use (Linux sysfs topology), else the CPU count."""
    cpus = _affinity()
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            return max(1, len(cpus))
        cores.add((package, core))
    return max(1, len(cores))


def _positive_int(text: str, where: str) -> int:
    from dlnlp.errors import OptionError

    try:
        value = int(text.strip())
    except ValueError:
        value = 0
    if value < 1:
        raise OptionError(f"{where} must be a whole number >= 1, got {text!r}")
    return value


def default_threads() -> int:
    """``OMP_NUM_THREADS`` when set (its first entry), else the physical cores."""
    omp = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if omp:
        try:
            if int(omp) >= 1:
                return int(omp)
        except ValueError:
            pass  # an invalid value: OpenMP ignores it too
    return physical_cores()


def resolve_threads(threads: int | None = None) -> int:
    """The thread count for ``--threads`` (None: ``DLNLP_THREADS``, else :func:`default_threads`)."""
    if threads is not None:
        return _positive_int(str(threads), "--threads")
    env = os.environ.get(ENV, "").strip()
    if env:
        return _positive_int(env, ENV)
    return default_threads()


def _bound_spinning() -> None:
    if "torch" in sys.modules:  # the OpenMP runtime has read its environment already
        return
    if any(name in os.environ for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")):
        return  # the user chose
    os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT
    os.environ.setdefault("KMP_BLOCKTIME", "0")


def configure_threads(threads: int | None = None) -> int:
    """Set Torch's intra-op threads to :func:`resolve_threads` (``threads``), inter-op threads to at most
    2, and bound OpenMP spinning when Torch is not imported yet; returns the intra-op count."""
    count = resolve_threads(threads)
    _bound_spinning()
    import torch

    torch.set_num_threads(count)
    # only possible before the first inter-op work; a second call keeps the first
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(min(count, MAX_INTEROP_THREADS))
    return count


def current_threads() -> int:
    """The intra-op threads Torch uses now (what run logs and ``--json`` summaries report)."""
    import torch

    return torch.get_num_threads()
