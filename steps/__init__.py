"""ZenML steps: thin, typed wrappers around :mod:`fercore`."""
