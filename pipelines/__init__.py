"""ZenML pipelines: wiring only."""

from pipelines.ingest import ingest_pipeline

PIPELINES = {"ingest": ingest_pipeline}

__all__ = ["PIPELINES", "ingest_pipeline"]
