"""ZenML pipelines: wiring only. ``PIPELINES`` (name -> pipeline) is imported on first use, so that the
checks in :mod:`pipelines.stack_checks` load without ZenML's pipelines."""

from __future__ import annotations


def __getattr__(name: str):
    if name != "PIPELINES":
        raise AttributeError(name)
    from pipelines.ingest import ingest_pipeline
    from pipelines.monitor import monitor_pipeline
    from pipelines.train_all import train_all_pipeline

    return {"ingest": ingest_pipeline, "train_all": train_all_pipeline, "monitor": monitor_pipeline}
