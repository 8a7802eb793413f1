import gc

import pytest

from engine.heap import frozen_once_ready


def test_ready_freezes_the_heap_and_the_stop_thaws_it() -> None:
    with frozen_once_ready() as ready:
        assert gc.get_freeze_count() == 0
        ready()
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0


def test_an_engine_that_fails_before_ready_leaves_nothing_frozen() -> None:
    with pytest.raises(RuntimeError), frozen_once_ready():
        raise RuntimeError("startup failed")
    assert gc.get_freeze_count() == 0
