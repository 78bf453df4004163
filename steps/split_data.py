"""Step: mark the validation split (FER-2013's PublicTest, or a share carved out of train)."""

from typing import Annotated

from zenml import step

from fercore.data.dataset import FerDataset
from fercore.data.split import split_validation
from materializers import FerDatasetMaterializer
from steps.cache import cache_policy


@step(output_materializers=FerDatasetMaterializer, cache_policy=cache_policy(__name__))
def split_data(dataset: FerDataset, val_fraction: float = 0.1, seed: int = 42,
               validation: str = "public_test") -> Annotated[FerDataset, "fer2013"]:
    """Marks the validation split: PublicTest, or ``val_fraction`` of train stratified by class.

    Args:
        dataset: the ingested dataset.
        val_fraction: share of train used for validation when carving.
        seed: split seed.
        validation: ``public_test`` or ``carve``.

    Returns:
        The dataset with train, val and test splits.
    """
    return split_validation(dataset, val_fraction, seed, validation)
