"""Helpers shared by the benchmark scripts (imported as ``from _timing import ...``: the scripts
run as ``python benchmarks/<name>.py``, so this folder is on ``sys.path``)."""

from __future__ import annotations

import os
import time

import torch


def clock() -> float:
    """Seconds of CPU time of this thread when torch runs on one thread (``OMP_NUM_THREADS=1``,
    the benchmarks' setting), else wall-clock seconds.

    On a machine shared with other jobs (load 2-10 on 2 cores), wall-clock time mostly measures
    how long the process waited for a core; a one-thread torch op runs on the calling thread,
    so its CPU time is the work itself. (With more threads the work runs on torch's pool.)
    """
    return time.thread_time() if torch.get_num_threads() == 1 else time.perf_counter()


def matmul_peak(n: int = 1024, repeats: int = 20) -> float:
    """FLOP/s of the fastest of ``repeats`` ``n x n`` ``torch.mm`` calls (same process, same threads).

    The best of many repeats (timed with :func:`clock`): on a shared machine a single call may
    lose its core.
    """
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t0 = clock()
        torch.mm(a, b)
        best = min(best, clock() - t0)
    return 2 * n**3 / best


def load() -> str:
    """The machine's load averages, to print next to timings."""
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
