"""Step: load FER-2013 from Kaggle, a folder, an archive or the CSV, and validate it."""

from typing import Annotated

from zenml import step
from zenml.client import Client

from fercore.config import DataConfig
from fercore.data.dataset import FerDataset, limit_per_class
from fercore.data.duplicates import drop_train_copies_of_test
from fercore.data.incoming import add_incoming, batch_paths
from fercore.data.ingest import ingest
from materializers import FerDatasetMaterializer
from steps.cache import cache_policy


# Cached by the source's content hash (an input) and the config: a changed source reruns it.
@step(output_materializers=FerDatasetMaterializer,
      cache_policy=cache_policy(__name__))
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
    local_stack = Client().active_stack.artifact_store.flavor == "local"
    ds = ingest(config.source, config.cache_dir, config.kaggle_dataset, config.use_cache and local_stack,
                config.image_limits(),
                digest=source_sha256 if not config.incoming else None)
    if config.incoming:  # new labelled batches join the training split (refused if they hold test images)
        ds = add_incoming(ds, batch_paths(config.incoming), config.image_limits())
    if config.drop_test_overlap:
        ds, dropped = drop_train_copies_of_test(ds)
        ds.metadata.update(dropped_test_overlap=dropped, counts=ds.counts())
    if config.max_per_class:
        ds = limit_per_class(ds, config.max_per_class, config.seed)
    return ds
