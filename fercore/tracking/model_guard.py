"""The one check every loading path makes before a registered model's pickle is opened: is it this
project's wrapper, and nothing else?

A pyfunc model's ``python_model.pkl`` is unpickled by ``mlflow.pyfunc.load_model``, and unpickling runs
whatever its opcodes call (``__reduce__ -> os.system``). The project's own paths (predict, the demo,
monitoring, promotion, distillation) never unpickle a wrapper at all: they rebuild the network from its
safetensors files (:mod:`fercore.tracking.loading`). Paths that must go through MLflow (an ensemble's
members inside ``mlflow models serve``, ``make serve`` itself, ``--trust-model``) check first.

The check replays the pickle with a restricted unpickler (the method of the ``pickle`` docs, "Restricting
Globals") whose classes are inert stand-ins: nothing is imported and nothing runs. It passes only when every
global the pickle names is on :data:`ALLOWED_GLOBALS` (what MLflow writes for the project's wrappers) and the
object is one of the wrappers; the MLmodel file must name MLflow's own pyfunc loader.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import yaml

from fercore.errors import RegistryError

OWN_WRAPPERS = ("FerEmotionModel", "FerEnsembleModel")
WRAPPER_MODULES = ("fercore.pyfunc", "fercore.serving.pyfunc")  # registered before fercore had packages, and since
# what MLflow's cloudpickle writes besides the wrapper: the predict method's type hints
ALLOWED_GLOBALS = {(m, c) for m in WRAPPER_MODULES for c in OWN_WRAPPERS} | {
    ("mlflow.models.signature", "_TypeHints"), ("numpy", "ndarray"), ("pandas.core.frame", "DataFrame"),
    ("pandas", "DataFrame"), ("builtins", "NoneType"), ("builtins", "list"), ("builtins", "dict"),
    ("builtins", "str"), ("builtins", "int"), ("builtins", "float"), ("builtins", "bool"), ("typing", "Any"),
}
PYFUNC_LOADER = "mlflow.pyfunc.model"


class UntrustedModelError(RegistryError):
    """A registered model that is not one of this project's wrappers: opening it could run its code."""


class _Inert:
    """Stands in for an allowed class while a pickle is replayed: accepts any arguments and state."""

    qualname = ""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __setstate__(self, state) -> None:
        pass


class _Refused(pickle.UnpicklingError):
    """A global outside the allow-list."""


class _ReplayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise _Refused(f"it imports {module}.{name}")
        return type(name, (_Inert,), {"qualname": f"{module}.{name}"})


def pickled_wrapper(data: bytes) -> str:
    """The project wrapper class a pickled pyfunc model holds, found without running any of it.

    Raises:
        pickle.UnpicklingError: the pickle names a global outside :data:`ALLOWED_GLOBALS`, holds another object,
            or is not a pickle (the message says what was found).
    """
    try:
        obj = _ReplayUnpickler(io.BytesIO(data)).load()
    except _Refused:
        raise
    except Exception as exc:  # noqa: BLE001 (a truncated or foreign file: any error of the replay)
        raise pickle.UnpicklingError(f"it is not a pickle this project wrote ({type(exc).__name__}: {exc})") from None
    name = getattr(obj, "qualname", "").rpartition(".")[2]
    if name not in OWN_WRAPPERS:
        raise pickle.UnpicklingError(f"it holds a {type(obj).__name__}, not one of {', '.join(OWN_WRAPPERS)}")
    return name


def checked_wrapper(folder: Path, what: str = "", trust: bool = False) -> str | None:
    """Which of the project's wrappers the pyfunc model in ``folder`` (a downloaded version) is; ``None`` when it is
    another model and ``trust`` allows loading it anyway through MLflow.

    Args:
        folder: the model's files (its ``MLmodel``).
        what: how to name the model in the error (default: the folder).
        trust: whether a model of another class may be loaded through MLflow, which unpickles it.

    Raises:
        UntrustedModelError: the model is not one of the wrappers (or its files say something else) and
            ``trust`` is off; the message names the model and what was found.
        RegistryError: the folder holds no pyfunc model.
    """
    what = what or str(folder)
    try:
        spec = yaml.safe_load((folder / "MLmodel").read_text())["flavors"]["python_function"]
    except (OSError, KeyError, TypeError, yaml.YAMLError) as exc:
        raise RegistryError(f"{what} holds no readable pyfunc model ({type(exc).__name__}: {exc})") from None
    try:
        if spec.get("loader_module") != PYFUNC_LOADER or not spec.get("python_model"):
            raise pickle.UnpicklingError(f"its loader is {spec.get('loader_module')}, not {PYFUNC_LOADER}")
        return pickled_wrapper((folder / spec["python_model"]).read_bytes())
    except (pickle.UnpicklingError, OSError) as exc:
        if trust:
            return None
        raise UntrustedModelError(
            f"{what} is not one of this project's wrappers ({', '.join(OWN_WRAPPERS)}): {exc}. Opening it would "
            "unpickle it, which can run any code, so it was not opened. Point the alias at a version your own "
            "pipeline registered; only if you trust where it came from, load it with `run.py predict "
            "--trust-model`") from None
