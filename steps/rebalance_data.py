"""Step: rebalance the training split."""

from typing import Annotated

from zenml import step

from fercore.config import RebalanceConfig
from fercore.data.dataset import FerDataset
from fercore.data.rebalance import Rebalanced, rebalance
from materializers import RebalancedMaterializer
from steps.cache import cache_policy


@step(output_materializers=RebalancedMaterializer, cache_policy=cache_policy(__name__))
def rebalance_data(dataset: FerDataset, config: RebalanceConfig) -> Annotated[Rebalanced, "train_plan"]:
    """Builds the rows each training epoch visits and the class loss weights.

    Args:
        dataset: the split dataset.
        config: the ``rebalance`` section of the config.

    Returns:
        The plan, with class counts before and after.
    """
    return rebalance(dataset, config.method, config.seed, config.size, config.power)
