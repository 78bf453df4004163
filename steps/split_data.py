"""Step: carve a stratified validation split out of train."""

from typing import Annotated

from zenml import step

from fercore.data.dataset import FerDataset
from fercore.data.split import split_validation
from materializers import FerDatasetMaterializer
from steps.cache import cache_policy


@step(output_materializers=FerDatasetMaterializer, cache_policy=cache_policy(__name__))
def split_data(dataset: FerDataset, val_fraction: float = 0.1, seed: int = 42) -> Annotated[FerDataset, "fer2013"]:
    """Marks ``val_fraction`` of train as ``val``, stratified by class; test is untouched.

    Args:
        dataset: the ingested dataset.
        val_fraction: share of train used for validation.
        seed: split seed.

    Returns:
        The dataset with train, val and test splits.
    """
    return split_validation(dataset, val_fraction, seed)
