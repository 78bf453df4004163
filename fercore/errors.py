"""Exceptions whose messages say what is wrong and how to fix it."""


class FerError(Exception):
    """Base class of the project's errors."""


class DataError(FerError):
    """The dataset source is missing, malformed or unreachable."""


class ConfigError(FerError):
    """A configuration file or value is invalid."""


class RegistryError(FerError):
    """The MLflow tracking/registry store cannot be used."""


class BusyError(FerError):
    """Another run holds what this one needs (a pipeline already running on the same stores)."""
