"""The dataset a run trains on: the source read and validated, new labelled batches added, training
copies of test images dropped, and an optional cap per class."""

from __future__ import annotations

from fercore.config import DataConfig
from fercore.data.dataset import FerDataset, limit_per_class
from fercore.data.duplicates import drop_train_copies_of_test
from fercore.data.incoming import add_incoming, batch_paths
from fercore.data.sources import ingest


def prepare(config: DataConfig, source_sha256: str, use_cache: bool = True) -> FerDataset:
    """Reads ``config.source`` (its content hash ``source_sha256`` names the decoded-data cache) and applies
    the ``data`` section: ``drop_test_overlap`` and ``max_per_class`` on the source, then incoming batches join
    the training split whole (refused if they hold test images). ``use_cache`` is ANDed with ``config.use_cache``."""
    ds = ingest(config.source, config.cache_dir, config.kaggle_dataset, config.use_cache and use_cache,
                config.image_limits(), digest=source_sha256 if not config.incoming else None)
    if config.drop_test_overlap:
        ds, dropped = drop_train_copies_of_test(ds)
        ds.metadata.update(dropped_test_overlap=dropped, counts=ds.counts())
    if config.max_per_class:  # caps the source: incoming batches are kept whole (they are what a run is for)
        ds = limit_per_class(ds, config.max_per_class, config.seed)
    if config.incoming:  # refused when they hold a copy of a test image: nothing to drop afterwards
        ds = add_incoming(ds, batch_paths(config.incoming), config.image_limits())
    return ds
