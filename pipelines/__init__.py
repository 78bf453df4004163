"""ZenML pipelines: wiring only."""

from pipelines.ingest import ingest_pipeline
from pipelines.monitor import monitor_pipeline
from pipelines.train_all import train_all_pipeline

PIPELINES = {"ingest": ingest_pipeline, "train_all": train_all_pipeline, "monitor": monitor_pipeline}

__all__ = ["PIPELINES", "ingest_pipeline", "monitor_pipeline", "train_all_pipeline"]
