"""Ctrl-C, heeded the same way in every command.

During training the step under way finishes and is checkpointed, then the run stops as interrupted
(``stop_between_steps``); SIGTERM, a scheduler's notice before it kills a job, is taken the same way.

Python raises KeyboardInterrupt wherever the main thread happens to be when the signal lands; raised
inside a finaliser (a tensor's or a DataLoader iterator's ``__del__``, run by the garbage collector) it
is printed as "Exception ignored" and lost. Of 30 Ctrl-Cs in tiny training runs, one went unheeded (the
run went on until killed) and one ended in a traceback from the cleanup. A handler that only records
the request, checked between steps, cannot be lost; a second Ctrl-C raises at once.

DataLoader workers (training pairs, evaluation crops) share the terminal's process group, so they get
the signal too. One that died of it mid-batch made the main process raise "DataLoader worker exited
unexpectedly" with a traceback and hang (1 of 20 Ctrl-Cs in ``urcdm-eval pfid``); with
``ignore_interrupts`` as their ``worker_init_fn`` they leave it to the main process, which shuts them down.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Callable, Iterator

# SIGTERM is how a batch scheduler (SLURM, Kubernetes) asks a job to stop before it kills it.
STOP_SIGNALS = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


@contextlib.contextmanager
def stop_between_steps() -> Iterator[Callable[[], bool]]:
    """Yields ``requested()``: whether Ctrl-C or SIGTERM came since the block began. A second one of
    either acts at once, as it would have without the block."""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield lambda: False
        return
    requested = threading.Event()
    # A signal the caller ignores stays ignored: `urcdm train ... &` from a script runs with SIGINT
    # ignored, and the terminal's Ctrl-C is not meant for it.
    previous = {number: signal.getsignal(number) for number in STOP_SIGNALS
                if signal.getsignal(number) is not signal.SIG_IGN}

    def record(signum, frame) -> None:
        requested.set()
        for number, handler in previous.items():
            signal.signal(number, handler)
        # a paper unet's step on a CPU takes minutes: say why nothing seems to happen
        print(f"\n{STOP_SIGNALS[signum]}: stopping after the step under way, with a checkpoint "
              "(Ctrl-C again to stop now)", file=sys.stderr, flush=True)

    for number in previous:
        signal.signal(number, record)
    try:
        yield requested.is_set
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt, so that the same cleanup runs: a
    temporary output is removed, not left beside the target (16 MB of a convert killed after 2 s)."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM raises ``Terminated`` instead of ending the process on the spot;
    a handler the caller installed (or SIG_IGN) is left alone."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def terminate(signum, frame) -> None:
        raise Terminated()

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Ctrl-C and SIGTERM that land inside the block take effect as it ends, each as it would have.
    For the few statements between making a temporary file and the ``try`` that removes it: a signal
    there left the file behind (3 of 100 converts killed by SIGTERM on a loaded machine)."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread sets handlers
        yield
        return
    received: list[int] = []
    # Python handlers and SIG_DFL are deferred; SIG_IGN stays ignored, and a handler installed outside
    # Python (getsignal() is None) is left alone.
    previous = {number: handler for number in STOP_SIGNALS
                if (handler := signal.getsignal(number)) is not None and handler is not signal.SIG_IGN}
    for number in previous:
        signal.signal(number, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if received:
            signal.raise_signal(received[0])


def ignore_interrupts(worker_id: int) -> None:
    """``worker_init_fn`` of every DataLoader with workers: the main process decides when they stop.
    A scheduler's SIGTERM reaches the whole job, workers included, as Ctrl-C reaches the terminal's
    process group; the workers exit when the main process shuts them down (or dies)."""
    for number in STOP_SIGNALS:
        signal.signal(number, signal.SIG_IGN)
