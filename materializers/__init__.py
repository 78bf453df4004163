"""ZenML materializers: compact numpy/JSON/safetensors formats, never pickle for data."""

from materializers.dataset_materializer import FerDatasetMaterializer, RebalancedMaterializer
from materializers.model_materializer import EvaluationMaterializer, FerModelMaterializer, PredictionsMaterializer

__all__ = ["EvaluationMaterializer", "FerDatasetMaterializer", "FerModelMaterializer", "PredictionsMaterializer",
           "RebalancedMaterializer"]
