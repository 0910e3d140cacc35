"""Issue 27, the faults a run meets on the way: a full disk, a signal, a size that would never end.

* a write that fails for lack of room names the file in one line, keeps what the file held and
  leaves no temporary file, whoever writes (the command line's ``--out``, the cache);
* SIGTERM and SIGINT end the command line with one line and the conventional status (143, 130),
  keeping the rows finished so far;
* ``check_config`` refuses, before any work, a config whose estimated time exceeds the limit,
  naming the estimate and how to raise the limit.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from isoplast_lite import _files
from isoplast_lite import run as run_mod
from isoplast_lite.__main__ import main
from isoplast_lite.run import Config, ConfigError, check_config

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--seeds", "1", "--tasks", "2", "--steps-per-task", "5", "--batch-size", "8", "--width", "8", "--depth", "2",
        "--n-train", "16", "--no-progress"]  # fmt: skip
RUN = ["run", "--benchmark", "random-label-digits", "--method", "adam", *TINY]


def _cli(argv):
    """``main(argv)`` in process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as exit_:
            status = exit_.code
    return status, out.getvalue(), err.getvalue()


@pytest.fixture
def full_disk(monkeypatch):
    """A file system under ``tmp_path`` whose writes fail with ENOSPC once ``full[0]`` is set:
    ``open`` in :mod:`isoplast_lite._files` returns handles whose ``write`` raises, as a full disk does."""
    full = [False]
    real_open = builtins.open

    class FullHandle(io.RawIOBase):
        def __init__(self, handle):
            self._handle = handle

        def writable(self):
            return True

        def write(self, data):
            if full[0]:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self._handle.write(data)

        def close(self):
            self._handle.close()
            super().close()

    def fake_open(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        return FullHandle(handle) if "w" in mode else handle

    monkeypatch.setattr(_files, "open", fake_open, raising=False)
    return full


def test_a_full_disk_names_the_file_and_keeps_its_content(tmp_path, full_disk):
    target = tmp_path / "keep.txt"
    _files.atomic_write(target, lambda h: h.write(b"before"))
    full_disk[0] = True
    with pytest.raises(_files.WriteError) as info:
        _files.atomic_write(target, lambda h: h.write(b"after"))
    message = str(info.value)
    assert str(target) in message and "no space left" in message and "\n" not in message, message
    assert info.value.errno == errno.ENOSPC and isinstance(info.value, OSError)
    assert target.read_bytes() == b"before"  # the old content kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]  # no temporary file left
    with pytest.raises(_files.WriteError, match="nothing was written"):
        _files.atomic_write(tmp_path / "new.txt", lambda h: h.write(b"x"))
    assert not (tmp_path / "new.txt").exists()


def test_a_full_disk_while_writing_out_is_one_line_naming_the_path(tmp_path, full_disk, monkeypatch):
    out = tmp_path / "r.csv"
    trained = []
    real = run_mod.run

    def run_then_fill(*args, **kwargs):  # the disk fills during training, after --out was checked
        df = real(*args, **kwargs)
        trained.append(len(df))
        full_disk[0] = True
        return df

    monkeypatch.setattr(run_mod, "run", run_then_fill)
    status, _, err = _cli([*RUN, "--no-cache", "--out", str(out)])
    assert trained, "the run did not reach its training"
    assert status == 1, (status, err)
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert str(out) in err and "no space left" in err, err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_a_full_disk_under_the_cache_names_the_cache_file(tmp_path, full_disk):
    cfg = Config("random-label-digits", "adam", seeds=1, n_tasks=1, steps_per_task=3, batch_size=8, width=8, depth=1,
                 n_train=16, probe_size=4)  # fmt: skip
    full_disk[0] = True
    with pytest.raises(_files.WriteError) as info:
        run_mod.run(cfg, cache_dir=tmp_path / "cache", progress=False)
    assert str(tmp_path / "cache") in str(info.value) and "no space left" in str(info.value)
