"""`gc_paused` pauses the cyclic collector for its block and leaves it as it found it."""

import gc

import pytest

from connectors.gc_pause import gc_paused


def test_the_collector_is_paused_inside_and_resumes_after_even_on_error() -> None:
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused():
        assert not gc.isenabled()
        raise RuntimeError("the work failed")
    assert gc.isenabled()


def test_a_collector_paused_by_the_caller_stays_paused() -> None:
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


@gc_paused()
def _work() -> bool:
    return gc.isenabled()


def test_it_decorates_a_function() -> None:
    assert _work() is False
    assert gc.isenabled()
