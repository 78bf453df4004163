"""The only place that talks to MLflow's tracking and registry APIs (the pyfunc wrappers in
:mod:`fercore.serving.pyfunc` import ``mlflow.pyfunc``, which a registered model needs).

- :mod:`fercore.tracking.locations`: where the store and the local cache are (no MLflow import).
- :mod:`fercore.tracking.store`: the connection, the pre-run check of the store, the adapter's own error type.
- :mod:`fercore.tracking.runs`: MLflow runs: a contender's run (:class:`TrackedRun`) with a nested run per rung and
  one for its evaluation; one-off runs (promotion, monitoring, ensembles).
- :mod:`fercore.tracking.registry`: registering versions, version and alias queries.
- :mod:`fercore.tracking.copies`, :mod:`fercore.tracking.loading`, :mod:`fercore.tracking.model_guard`: a version's
  local copy, what loads it, and the check that it is the project's wrapper before anything is unpickled.
- :mod:`fercore.tracking.tags`, :mod:`fercore.tracking.purge`: version tags; deleting what ``gc`` removes.
"""
