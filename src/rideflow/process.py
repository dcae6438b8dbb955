"""Process-level set-up shared by the long-running processes: heap tuning and signals."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


YOUNG_GC_THRESHOLD = 10_000


def freeze_startup_objects() -> None:
    """Move everything built at start-up out of the garbage collector's sight.

    Imports and app construction leave hundreds of thousands of long-lived objects; without
    this, every full collection walks them all and stalls the event loop for ~50 ms, which is
    the whole p99 of the request path.

    The youngest generation is also collected less often (every `YOUNG_GC_THRESHOLD`
    allocations instead of 700): at the default, whatever is in flight at the moment (messages
    read from sockets, positions waiting for their batch) survives two collections, is promoted
    to the oldest generation and soon triggers a full collection, which walks every live
    object: with 10,000 sockets open that is over a million objects and about half a second
    (figure 17's positions over sockets went from ~17,000 to ~36,000/s with this).
    """
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GC_THRESHOLD, middle, oldest)


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM, for the running loop's long-running command to stop
    gracefully on (a second signal finds the handler still there and changes nothing)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A `preexec_fn` that has the child sent `sig` when the process starting it dies, even by
    kill -9 (Linux `PR_SET_PDEATHSIG`; elsewhere it does nothing).

    The signal follows the death of the thread that forked, so start children from the main
    thread. A parent that died before the child armed it is caught by comparing parents."""
    if not sys.platform.startswith("linux"):
        return lambda: None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before fork, not in the child
    parent = os.getpid()

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), sig)

    return arm
