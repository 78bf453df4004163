"""The one thread on which a serving process loads and runs its models.

Torch's OpenMP pool belongs to the thread that starts it. A server answers on worker threads of its own
(``mlflow models serve`` runs each request with ``asyncio.to_thread``, Gradio on its pool), while the model
was loaded on the main thread: every such thread starts a second pool, which competes with the first one's
spinning workers on a small machine. Measured on 2 cores (docs/BENCHMARKS.md, "Three nights with the spare
seed"): ``vgg7`` on one face took 43 ms loaded on the main thread and run on a worker thread, 16 ms loaded and run
on one thread; served, 48 ms before and 20 ms after.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
THREAD_PREFIX = "fer-models"
_executor: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def on_model_thread(fn: Callable[..., T], *args, **kwargs) -> T:
    """``fn(*args, **kwargs)`` run on the model thread, its result or exception returned here. A call made on
    the model thread itself (an ensemble calling its members) runs at once: waiting for itself would hang."""
    if threading.current_thread().name.startswith(THREAD_PREFIX):
        return fn(*args, **kwargs)
    return _model_executor().submit(fn, *args, **kwargs).result()


def stop_model_thread() -> None:
    """Lets the model thread go without waiting for a call still queued (a server stopping on Ctrl-C); a later
    call starts a new one."""
    global _executor
    with _lock:
        executor, _executor = _executor, None
    if executor is not None:
        executor.shutdown(wait=False, cancel_futures=True)


def _model_executor() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=THREAD_PREFIX)
        return _executor


def _forget_in_child() -> None:
    # a forked child (a ZenML step, a test worker) has no copy of the parent's thread: it starts its own on first use
    global _executor, _lock
    _executor, _lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_in_child)
