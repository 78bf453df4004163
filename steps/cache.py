"""ZenML cache policies: the default key plus the core code a step's output depends on."""

import importlib

from zenml.config.cache_policy import CachePolicy


def cache_policy(*modules: str) -> CachePolicy:
    """ZenML's default cache key (step code, parameters, inputs) plus the source of ``modules``.

    ZenML hashes a step's own code, not the plain Python it calls: a change in ``fercore.train``
    must rerun training although ``steps/train_cnn.py`` is unchanged.
    """
    return CachePolicy(source_dependencies=[importlib.import_module(m) for m in modules])
