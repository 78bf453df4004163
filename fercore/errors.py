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


class ModelFilesMissing(RegistryError):
    """A registered version's files (or an ensemble member's version) are gone or unreadable: it cannot be loaded."""


class StoreBusyError(RegistryError):
    """The MLflow store stayed busy or unreachable through the retries: nothing was decided on a guess."""
