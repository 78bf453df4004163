"""The model thread in a forked process (a ZenML step, a test worker): the child starts its own."""

from __future__ import annotations

import os

import pytest

from fercore.serving.model_thread import on_model_thread


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
def test_a_forked_child_starts_its_own_model_thread():
    on_model_thread(lambda: None)  # the parent's thread exists
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the parent's thread is not here, a call must not wait for it
        os.close(read)
        os.write(write, str(on_model_thread(lambda: 41) + 1).encode())
        os._exit(0)
    os.close(write)
    answer = os.read(read, 16)
    os.waitpid(pid, 0)
    assert answer == b"42"
