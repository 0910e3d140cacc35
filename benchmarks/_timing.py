"""Helpers shared by the benchmark scripts (imported as ``from _timing import ...``: the scripts
run as ``python benchmarks/<name>.py``, so this folder is on ``sys.path``)."""

from __future__ import annotations

import os
import time

import torch


def matmul_peak(n: int = 1024, repeats: int = 20) -> float:
    """FLOP/s of the fastest of ``repeats`` ``n x n`` ``torch.mm`` calls (same process, same threads).

    The best of many repeats: on a shared machine a single call may lose its core.
    """
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def load() -> str:
    """The machine's load averages, to print next to timings."""
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
