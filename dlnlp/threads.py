"""How many CPU threads Torch computes with: ``--threads N``, ``DLNLP_THREADS``, or a default that does
not oversubscribe the machine. Decided once per process, before Torch starts working.

The default is ``OMP_NUM_THREADS`` when it is set, as every OpenMP program reads it, else the physical
cores this process may run on (hyperthreads share a core's arithmetic units) less the CPU-bound
processes running when the command starts (``/proc/stat``'s ``procs_running``, the least of a few
samples, so a passing process is not counted), at least one. Torch splits each op evenly over its
threads and waits for the slowest, so a thread that shares its core with another busy process slows
every op down: ``bench/threads.py`` measured the README's GPT on 2 cores with one other CPU-bound
process at about 11k tokens/s with one thread and 0.2-3.6k with two (OpenMP's spin-waiting bounded
by ``GOMP_SPINCOUNT`` or made passive by ``OMP_WAIT_POLICY=PASSIVE`` did not change that), while on
an idle machine two threads gave about 1.6x one. ``--threads`` overrides the choice. Inter-op threads
(parallel *independent* ops, which the small eager models here hardly have) are kept at 1-2.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

ENV = "DLNLP_THREADS"
MAX_INTEROP_THREADS = 2


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
    """``OMP_NUM_THREADS`` when set (its first entry), else the physical cores less the other busy
    processes (:func:`busy_elsewhere`), at least one."""
    omp = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if omp:
        try:
            if int(omp) >= 1:
                return int(omp)
        except ValueError:
            pass  # an invalid value: OpenMP ignores it too
    return max(1, physical_cores() - busy_elsewhere())


def busy_elsewhere(samples: int = 3, interval: float = 0.005) -> int:
    """Other processes' runnable threads now: ``procs_running`` of ``/proc/stat`` (which counts this
    one) less one, the least of ``samples`` readings ``interval`` seconds apart; 0 where unknown."""
    import time

    seen = []
    for i in range(samples):
        try:
            with open("/proc/stat", encoding="ascii") as handle:
                running = next((int(line.split()[1]) for line in handle if line.startswith("procs_running")), None)
        except (OSError, ValueError):
            return 0
        if running is None:
            return 0
        seen.append(running - 1)
        if i + 1 < samples:
            time.sleep(interval)
    return max(0, min(seen))


def resolve_threads(threads: int | None = None) -> int:
    """The thread count for ``--threads`` (None: ``DLNLP_THREADS``, else :func:`default_threads`)."""
    if threads is not None:
        return _positive_int(str(threads), "--threads")
    env = os.environ.get(ENV, "").strip()
    if env:
        return _positive_int(env, ENV)
    return default_threads()


def configure_threads(threads: int | None = None) -> int:
    """Set Torch's intra-op threads to :func:`resolve_threads` (``threads``) and its inter-op threads to
    at most 2; returns the intra-op count."""
    count = resolve_threads(threads)
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
