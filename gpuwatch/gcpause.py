"""Cyclic garbage collection held off while a large answer is decoded and turned into snapshots.

A fleet refresh decodes megabytes of JSON into about a million dicts, lists and strings, nearly
all of them freed by reference counting minutes before any cycle could matter. Each 700 of those
allocations starts a young collection, and enough of them a full one that walks everything alive
(the hosts' histories, Textual's widgets): on the bench box a third of the refresh's time
(bench/fleet.py, 256 hosts x 8 GPUs: 1.59 s with the collector, 1.00 s without it). ``paused()``
turns it off for the duration and back on after, for every thread of the process: nested or
overlapping uses from several threads keep it off until the last one ends, and it is only turned
back on if it was on before the first.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextlib.contextmanager
def paused() -> Iterator[None]:
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
