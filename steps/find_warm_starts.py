"""Step: where each contender continues from (``training.continue_from: latest``)."""

from typing import Annotated, Any

from zenml import log_metadata, step

from fercore.config import Config
from fercore.data.dataset import FerDataset
from fercore.tracking.store import connect
from fercore.training.warm_start import warm_starts
from steps.common import tracking_uri


# Never cached: a version registered since the last run is what this step is for.
@step(enable_cache=False)
def find_warm_starts(dataset: FerDataset, config: Config) -> Annotated[dict[str, Any], "warm_starts"]:
    """Each enabled contender's latest registered version on the same validation images and network, or why it
    starts fresh (:func:`fercore.training.warm_start.warm_starts`)."""
    uri = tracking_uri(config.registry)
    connect(uri, config.registry.experiment_name)
    found = warm_starts(config, dataset, uri)
    log_metadata(metadata={n: e["reason"] for n, e in found.items()}, infer_artifact=True, artifact_name="warm_starts")
    return found
