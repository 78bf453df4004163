"""The pickle guard (issue 42, rule 1): a wrapper's pickle passes; one that names any other global, even beside the
wrapper, is refused; nothing in either is run or imported."""

from __future__ import annotations

import pickle
import sys

import pytest

from fercore.tracking.model_guard import pickled_wrapper


def _global(module: str, name: str) -> bytes:
    return b"".join(b"\x8c" + bytes([len(s)]) + s.encode() for s in (module, name)) + b"\x93"  # STACK_GLOBAL


def _wrapper(name: str = "FerEmotionModel", state: bytes = b"}") -> bytes:
    """What cloudpickle writes for the wrapper (by reference): the class, NEWOBJ, then its state dict and BUILD."""
    return b"\x80\x04" + _global("fercore.serving.pyfunc", name) + b")\x81" + state + b"b."


def test_the_wrappers_pickle_passes_without_importing_anything():
    before = set(sys.modules)
    hints = _global("mlflow.models.signature", "_TypeHints") + b")\x81}b"  # the predict method's type hints
    state = b"}\x8c\x13_predict_type_hints" + hints + b"s"
    assert pickled_wrapper(_wrapper(state=state)) == "FerEmotionModel"
    assert pickled_wrapper(_wrapper("FerEnsembleModel")) == "FerEnsembleModel"
    assert "fercore.serving.pyfunc" not in set(sys.modules) - before and "mlflow" not in set(sys.modules) - before


def test_a_wrapper_that_carries_a_call_to_os_system_is_refused(tmp_path):
    marker = tmp_path / "PWNED"
    payload = _global("posix", "system") + b"\x8c" + bytes([len(f"touch {marker}")]) + f"touch {marker}".encode()
    payload += b"\x85R"  # TUPLE1, REDUCE: os.system("touch ...")
    crafted = _wrapper(state=b"}\x8c\x01x" + payload + b"s")  # the call hidden in the wrapper's state
    with pytest.raises(pickle.UnpicklingError, match=r"it imports posix\.system"):
        pickled_wrapper(crafted)
    assert not marker.exists()


@pytest.mark.parametrize(("data", "reason"), [
    (pickle.dumps({"a": 1}), r"it holds a dict, not one of FerEmotionModel"),
    (b"\x80\x04" + _global("numpy", "ndarray") + b")\x81.", r"it holds a ndarray, not one of"),
    (b"not a pickle at all", r"it is not a pickle this project wrote"),
    (_wrapper()[:-3], r"it is not a pickle this project wrote"),
])
def test_anything_else_is_refused_by_name(data, reason):
    with pytest.raises(pickle.UnpicklingError, match=reason):
        pickled_wrapper(data)
