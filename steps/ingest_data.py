"""Step: load FER-2013 from Kaggle, a folder, an archive or the CSV, and validate it."""

from typing import Annotated

from zenml import step
from zenml.client import Client

from fercore.config import DataConfig
from fercore.data.dataset import FerDataset
from fercore.data.prepare import prepare
from materializers import FerDatasetMaterializer
from steps.cache import cache_policy


# Cached by the source's content hash (an input) and the config: a changed source reruns it.
@step(output_materializers=FerDatasetMaterializer, cache_policy=cache_policy(__name__))
def ingest_data(source_sha256: str, config: DataConfig) -> Annotated[FerDataset, "fer2013_raw"]:
    """Reads and validates the dataset (train and test splits).

    Args:
        source_sha256: the source's content hash, from ``fingerprint_data``.
        config: the ``data`` section of the config.

    Returns:
        The validated dataset; its metadata holds counts, sha256 and duplicates.
    """
    # On a remote stack a pod's disk does not outlive the step: this step's output, stored in the artifact
    # store and cached by ZenML on the source's hash, is the decoded-data cache there.
    return prepare(config, source_sha256, use_cache=Client().active_stack.artifact_store.flavor == "local")
