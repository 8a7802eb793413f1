"""The process's heap after startup: moved out of the garbage collector's sight.

Startup imports and builds almost every long-lived object the engine will ever have (modules,
SQLAlchemy's metadata and compiled statements, the venue client, the strategies). CPython's
cyclic collector walks all of them at every full collection: about 0.14 ms of CPU per order in
bench/execution.py (its ``gc_ms``) for objects that never become garbage. :func:`gc.freeze`
moves them to a permanent generation the collector skips; what the engine allocates afterwards
is collected as before, and anything freed by reference counting is freed as before.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def frozen_once_ready() -> Iterator[Callable[[], None]]:
    """An engine's ``on_ready``: freeze the heap as it is when the engine is ready; thawed when
    the engine stops.

    No collection before the freeze (it would stall every other account of a pool for a walk
    of the whole heap): startup's few cyclic leftovers are kept until the thaw instead. The
    thaw at the stop returns everything to the collector, so an engine that stops (a lost
    lease in a pool, a test) leaves no frozen cycles behind; the next engine to get ready
    freezes again.
    """
    try:
        yield gc.freeze
    finally:
        gc.unfreeze()


@contextmanager
def frozen_for_now() -> Iterator[None]:
    """The heap as it is, frozen for the block, then thawed: for a long computation that keeps
    everything made before it alive to its end (a replay's bars, hundreds of thousands of
    objects, which every full collection of the run would otherwise walk again: the run's cost
    per bar grew with its length). A heap frozen already (an engine's, by
    :func:`frozen_once_ready`) is left as it is: its owner thaws it."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
