"""Core logic of the FER-2013 MLOps project: data, models, training, metrics, registry, drift.

This package has no ZenML imports so that it is fast to test and reusable from a predict CLI
or an MLflow pyfunc model.
"""

from fercore.constants import CLASS_NAMES, IMAGE_SIZE, NUM_CLASSES
from fercore.errors import ConfigError, DataError, FerError

__all__ = ["CLASS_NAMES", "IMAGE_SIZE", "NUM_CLASSES", "ConfigError", "DataError", "FerError"]
