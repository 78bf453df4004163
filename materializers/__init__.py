"""ZenML materializers: compact numpy/JSON/safetensors formats, never pickle for data."""

from materializers.dataset_materializer import FerDatasetMaterializer, RebalancedMaterializer
from materializers.figure_materializer import PngFigureMaterializer, ProbabilitiesMaterializer
from materializers.model_materializer import (
    EvaluationMaterializer,
    ExplanationMaterializer,
    FerModelMaterializer,
    PredictionsMaterializer,
)

__all__ = ["EvaluationMaterializer", "ExplanationMaterializer", "FerDatasetMaterializer", "FerModelMaterializer",
           "PngFigureMaterializer", "PredictionsMaterializer", "ProbabilitiesMaterializer",
           "RebalancedMaterializer"]
