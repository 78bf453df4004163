"""What ``run.py predict`` and the demo say of an input that is not a photo file (issue 42's minor points)."""

from __future__ import annotations

import os

import pytest

from fercore.errors import DataError
from fercore.serving.faces import load_photo


def test_a_device_a_pipe_and_a_folder_are_named_for_what_they_are(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match=r"pipe\.jpg is not a regular file \(a device, a pipe or a socket\)"):
        load_photo(fifo)  # never opened: reading a FIFO with no writer would block
    with pytest.raises(DataError, match=r"/dev/zero is not a regular file"):
        load_photo("/dev/zero")
    with pytest.raises(DataError, match=r"is a folder: pass a photo file"):
        load_photo(tmp_path)
    with pytest.raises(DataError, match=r"missing\.jpg: no such file"):
        load_photo(tmp_path / "missing.jpg")
