"""Registered models at work: the MLflow pyfunc wrappers, the registry client, local copies, predicting on photos."""
