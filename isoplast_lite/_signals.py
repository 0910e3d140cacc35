"""Signals that stop the work as Ctrl-C does: one exception, one way to name a signal.

The command line (``python -m isoplast_lite``) and a ``local`` sweep turn SIGINT and SIGTERM into
:class:`Interrupted`, so that the ``finally`` blocks run (locks released, workers cancelled) and
the command ends with one line and the status ``128 + signal`` (130, 143).

Why a subclass of ``KeyboardInterrupt`` rather than ``KeyboardInterrupt`` itself: CPython (3.11,
``Python/pythonrun.c``) marks the process as "killed by Ctrl-C" when an exception of the exact
type ``KeyboardInterrupt`` leaves code run by ``exec`` or ``eval`` of a *string*, and never
unmarks it when the exception is then caught. Under ``python -m`` the interpreter then ends by
re-sending SIGINT to itself, whatever status the program chose (``SystemExit(130)`` became
``-2``). Such strings run all the time where a signal can land: ``dataclasses`` builds every
``__init__`` with ``exec``, and the first optimizer step imports parts of torch that define
hundreds of dataclasses. A subclass is not the exact type, so the status the command chose is
the status it gets.
"""

from __future__ import annotations

import signal
import threading
from typing import Callable, Iterable


def signal_name(number: int) -> str:
    """The name of a signal and its number, as the messages print it.

    Args:
        number: A signal number.

    Returns:
        ``"SIGTERM (signal 15)"``, or ``"signal N"`` for a number with no name here.

    Examples:
        >>> signal_name(15)
        'SIGTERM (signal 15)'
        >>> signal_name(250)
        'signal 250'
    """
    try:
        return f"{signal.Signals(number).name} (signal {number})"
    except ValueError:
        return f"signal {number}"


class Interrupted(KeyboardInterrupt):
    """A signal stopped the work (a ``KeyboardInterrupt``, so whatever catches Ctrl-C catches it).

    Args:
        signum: The number of the signal that stopped it.

    Examples:
        >>> err = Interrupted(15)
        >>> err.signum, err.name, err.status, str(err)
        (15, 'SIGTERM', 143, 'stopped by SIGTERM (signal 15)')
        >>> isinstance(err, KeyboardInterrupt) and type(err) is not KeyboardInterrupt
        True
    """

    def __init__(self, signum: int):
        self.signum = int(signum)
        super().__init__(f"stopped by {signal_name(self.signum)}")

    @property
    def name(self) -> str:
        """The signal's name (``"SIGINT"``), or ``"signal N"``."""
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"

    @property
    def status(self) -> int:
        """The exit status a shell reports for it: ``128 + signal``."""
        return 128 + self.signum


def interrupt_on(signums: Iterable[int]) -> Callable[[], None]:
    """Make each signal of ``signums`` raise :class:`Interrupted` in the main thread.

    A signal the process was started with ignored (``nohup``, a shell's background job for
    SIGINT) stays ignored. Outside the main thread nothing is installed (Python runs signal
    handlers in the main thread only).

    Args:
        signums: The signals, e.g. ``(signal.SIGINT, signal.SIGTERM)``.

    Returns:
        The function that puts the previous handlers back.

    Raises:
        ValueError: If a signal is not a catchable signal of this platform.

    Examples:
        >>> import os, signal, time
        >>> before = signal.getsignal(signal.SIGTERM)
        >>> restore = interrupt_on([signal.SIGTERM])
        >>> try:
        ...     os.kill(os.getpid(), signal.SIGTERM)
        ...     time.sleep(10)  # the handler raises at once: never slept through
        ... except Interrupted as err:
        ...     print(err.name, err.status)
        SIGTERM 143
        >>> restore()
        >>> signal.getsignal(signal.SIGTERM) is before
        True
    """
    signums = [signal.Signals(s) for s in signums]
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum, frame):
        raise Interrupted(signum)

    previous = {}
    for signum in signums:
        if signal.getsignal(signum) is signal.SIG_IGN:
            continue
        previous[signum] = signal.signal(signum, handler)

    def restore() -> None:
        for signum, before in previous.items():
            signal.signal(signum, before)

    return restore
