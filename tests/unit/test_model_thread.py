"""The model thread: every call from any thread runs on one thread; a call from that thread runs at once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from fercore.serving.model_thread import THREAD_PREFIX, on_model_thread, stop_model_thread


def _thread_name() -> str:
    return threading.current_thread().name


def test_calls_from_many_threads_run_on_one_model_thread():
    with ThreadPoolExecutor(4) as callers:
        names = set(callers.map(lambda _: on_model_thread(_thread_name), range(16)))
    assert len(names) == 1
    assert names.pop().startswith(THREAD_PREFIX)
    assert on_model_thread(_thread_name).startswith(THREAD_PREFIX)  # and from the main thread


def test_a_call_from_the_model_thread_runs_at_once_on_it():
    def outer() -> tuple[str, str]:
        return _thread_name(), on_model_thread(_thread_name)  # an ensemble calling a member: must not wait for itself

    outer_name, inner_name = on_model_thread(outer)
    assert outer_name == inner_name


def test_the_result_and_the_exception_come_back_to_the_caller():
    assert on_model_thread(lambda a, b=0: a + b, 2, b=3) == 5
    with pytest.raises(ValueError, match="bad face"):
        on_model_thread(lambda: (_ for _ in ()).throw(ValueError("bad face")))


def test_a_stopped_model_thread_is_started_again_by_the_next_call():
    stop_model_thread()
    assert on_model_thread(lambda: 7) == 7
    assert on_model_thread(_thread_name).startswith(THREAD_PREFIX)
