"""Pipeline ``ingest``: ingest -> split -> rebalance."""

from zenml import pipeline

from fercore.config import Config
from steps.fingerprint_data import fingerprint_data
from steps.ingest_data import ingest_data
from steps.rebalance_data import rebalance_data
from steps.split_data import split_data


def data_steps(config: Config):
    """Wires the data steps shared by every pipeline; returns the split dataset and the plan."""
    raw = ingest_data(fingerprint_data(config=config.data), config=config.data)
    dataset = split_data(raw, val_fraction=config.data.val_fraction, seed=config.data.seed)
    plan = rebalance_data(dataset, config=config.rebalance)
    return dataset, plan


@pipeline(name="fer_ingest")
def ingest_pipeline(config: Config) -> None:
    """Ingests, validates, splits and rebalances FER-2013."""
    data_steps(config)
