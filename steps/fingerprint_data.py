"""Step: the content hash of the data source, which keys the cached ingestion."""

from typing import Annotated

from zenml import step

from fercore.config import DataConfig
from fercore.data.incoming import fingerprint
from fercore.data.sources import source_fingerprint


# Never cached: the source's content can change under the same path. Hashing it is cheap (about
# 0.3 s for FER-2013's 60 MB archive); decoding, which the hash lets ZenML skip, is not.
@step(enable_cache=False)
def fingerprint_data(config: DataConfig) -> Annotated[str, "source_sha256"]:
    """sha256 of the source's content and of every incoming batch (a Kaggle source is downloaded first, once).

    Args:
        config: the ``data`` section of the config.

    Returns:
        The hex digest; ``ingest_data`` takes it as input, so an unchanged source hits its cache.
    """
    return fingerprint(source_fingerprint(config.source, config.cache_dir, config.kaggle_dataset), config.incoming)
