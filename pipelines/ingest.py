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
    dataset = split_data(raw, val_fraction=config.data.val_fraction, seed=config.data.seed,
                         validation=config.data.validation)
    plan = rebalance_data(dataset, config=config.rebalance)
    return dataset, plan


@pipeline(name="fer_ingest")
def ingest_pipeline(config: Config) -> None:
    """Ingests, validates, splits and rebalances FER-2013."""
    data_steps(config)


def print_counts(run) -> None:
    """Prints per-split, per-class counts of the dataset and of the rebalanced train rows."""
    from fercore.constants import CLASS_NAMES

    dataset = run.steps["split_data"].outputs["fer2013"][0].load()
    plan = run.steps["rebalance_data"].outputs["train_plan"][0].load()
    rows = dataset.counts()
    rows[f"train:{plan.method}"] = plan.counts_after
    print(f"\n{'split':<22}" + "".join(f"{c:>9}" for c in CLASS_NAMES) + f"{'total':>9}")
    for split, per_class in rows.items():
        print(f"{split:<22}" + "".join(f"{per_class[c]:>9}" for c in CLASS_NAMES) + f"{sum(per_class.values()):>9}")
    for batch in dataset.metadata.get("incoming", []):
        print(f"{'incoming:' + batch['name'][:13]:<22}" + "".join(f"{batch['counts'][c]:>9}" for c in CLASS_NAMES)
              + f"{batch['images']:>9}")
    dup = dataset.metadata.get("duplicates", {})
    if dup:
        cross = dup["cross_split"]
        print(f"\nduplicates: {dup['within_train']['extra_copies']} extra copies in train, "
              f"{dup['within_test']['extra_copies']} in test; {cross['test_images']} test images also in train")
