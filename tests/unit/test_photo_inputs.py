"""What ``run.py predict`` and the demo say of an input that is not a photo file (issue 42's minor points)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from fercore.errors import DataError
from fercore.serving.faces import load_photo
from fercore.serving.predict import classify_faces  # imported at collection: its libraries look for shared objects


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


def test_faces_are_classified_in_one_call_with_their_maps_for_the_labels_they_got():
    calls = []
    probs = np.eye(7)[[3, 0]]

    def predict(x):
        calls.append(len(x))
        return probs

    crops = np.zeros((2, 48, 48), np.uint8)
    got, labels, maps = classify_faces(crops, predict, lambda x, y: np.stack([np.full((48, 48), c) for c in y]))
    assert calls == [2] and labels.tolist() == [3, 0] and maps[:, 0, 0].tolist() == [3, 0]
    np.testing.assert_array_equal(got, probs)
    empty = classify_faces(np.zeros((0, 48, 48), np.uint8), predict)
    assert empty[0].shape == (0, 7) and empty[2] is None and calls == [2]  # no call for no face
