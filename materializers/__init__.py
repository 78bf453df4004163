"""ZenML materializers: compact numpy/JSON/safetensors formats, never pickle for data."""

from materializers.dataset_materializer import FerDatasetMaterializer, RebalancedMaterializer

__all__ = ["FerDatasetMaterializer", "RebalancedMaterializer"]
