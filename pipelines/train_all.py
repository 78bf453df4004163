"""Pipeline ``train_all``: ingest -> rebalance -> train -> evaluate -> register, per model."""

from zenml import pipeline
from zenml.config import ResourceSettings

from fercore.config import Config
from pipelines.ingest import data_steps
from steps.evaluate_model import evaluate_model
from steps.promote_models import promote_models
from steps.register_model import register_model
from steps.train_cnn import train_cnn
from steps.train_vit import train_vit


def gpu_settings(config: Config) -> dict:
    """ResourceSettings asking the orchestrator or step operator for the configured GPUs."""
    r = config.resources
    return {"resources": ResourceSettings(gpu_count=r.gpu_count, cpu_count=r.cpu_count, memory=r.memory)}


@pipeline(name="fer_train_all")
def train_all_pipeline(config: Config) -> None:
    """Trains, evaluates and registers every enabled model on FER-2013."""
    dataset, plan = data_steps(config)
    registered = {"cnn": None, "vit": None}
    if config.cnn.enabled:
        model, training, run_id = train_cnn.with_options(settings=gpu_settings(config))(
            dataset, plan, config.cnn, config.registry, config.checkpoint_dir
        )
        evaluation = evaluate_model(model, dataset, training, run_id, config.registry, config.cnn.tta_hflip,
                                    id="evaluate_cnn")
        registered["cnn"] = register_model(model, evaluation, run_id, dataset, config.registry, "cnn",
                                           config.cnn.tta_hflip, id="register_cnn")
    if config.vit.enabled:
        model, training, run_id = train_vit.with_options(settings=gpu_settings(config))(
            dataset, plan, config.vit, config.registry, config.checkpoint_dir
        )
        evaluation = evaluate_model(model, dataset, training, run_id, config.registry, config.vit.tta_hflip,
                                    id="evaluate_vit")
        registered["vit"] = register_model(model, evaluation, run_id, dataset, config.registry, "vit",
                                           config.vit.tta_hflip, {"checkpoint": config.vit.checkpoint or "scratch"},
                                           id="register_vit")
    if config.promotion.enabled and any(registered.values()):
        promote_models(dataset, config.registry, config.promotion, **registered)
