"""The command line as the tests drive it: in this process (:func:`cli`) or as a child process
(:func:`start`, for what needs a process of its own: signals, a clean interpreter)."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from typing import List, Tuple

from isoplast_lite.__main__ import main


def cli(argv: List[str]) -> Tuple[object, str, str]:
    """``main(argv)`` in process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as exit_:
            status = exit_.code
    return status, out.getvalue(), err.getvalue()


def start(argv: List[str], cwd) -> subprocess.Popen:
    """``python -m isoplast_lite *argv`` started in ``cwd`` (one thread, no progress bar, no
    warnings), its stdout and stderr piped as text."""
    env = {**os.environ, "ISOPLAST_PROGRESS": "0", "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "isoplast_lite", *argv], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
