"""The only place that talks to MLflow's tracking and registry APIs (the pyfunc wrappers in
:mod:`fercore.serving.pyfunc` import ``mlflow.pyfunc``, which a registered model needs).

- :mod:`fercore.tracking.store`: the connection and the pre-run check of the store.
- :mod:`fercore.tracking.runs`: MLflow runs: a contender's run (:class:`TrackedRun`), opened by training,
  resumed by evaluation and closed once by registration; one-off runs (promotion, monitoring, ensembles).
- :mod:`fercore.tracking.registry`: registering versions, version and alias queries, loading a version.
"""
