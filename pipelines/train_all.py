"""Pipeline ``train_all``: ingest -> rebalance -> train -> evaluate -> register per model -> promote."""

from zenml import pipeline

from fercore.config import Config, TrainingConfig
from fercore.models.vit import vit_variant
from pipelines.deploy import training_settings
from pipelines.ingest import data_steps
from steps.evaluate_model import evaluate_model
from steps.promote_models import promote_models
from steps.register_model import register_model
from steps.train_cnn import train_cnn
from steps.train_vit import train_vit


def model_steps(config: Config, dataset, plan, train_step, model_config: TrainingConfig, kind: str,
                extra_tags: dict[str, str] | None = None, teacher_registration=None, **train_inputs):
    """Wires train -> evaluate -> register for one model; returns the model, its registration and its
    val/test predictions (which promotion reuses instead of scoring the model again)."""
    model, training, run_id = train_step.with_options(settings=training_settings(config))(
        dataset, plan, model_config, config.registry, config.checkpoint_dir,
        ddp_processes=config.resources.ddp_processes, **train_inputs
    )
    evaluation, val_evaluation, predictions = evaluate_model(
        model, dataset, training, run_id, config.registry, model_config.tta, model_config.mixed_precision,
        id=f"evaluate_{kind}")
    registration = register_model(model, evaluation, val_evaluation, run_id, dataset, config.registry, kind,
                                  model_config.tta, model_config.mixed_precision, extra_tags, teacher_registration,
                                  id=f"register_{kind}")
    return model, registration, predictions


@pipeline(name="fer_train_all")
def train_all_pipeline(config: Config) -> None:
    """Trains, evaluates and registers every enabled model on FER-2013, then promotes."""
    dataset, plan = data_steps(config)
    registered, predictions, cnn_model = {"cnn": None, "vit": None}, {}, None
    if config.cnn.enabled:
        cnn_model, registered["cnn"], predictions["cnn_predictions"] = model_steps(
            config, dataset, plan, train_cnn, config.cnn, "cnn")
    if config.vit.enabled:
        distill = config.vit.distill
        teacher = {"teacher": cnn_model} if distill.enabled and distill.teacher == "cnn" else {}
        tags = {"checkpoint": vit_variant(config.vit)}
        if distill.enabled:
            tags["distill_teacher"] = distill.teacher
        _, registered["vit"], predictions["vit_predictions"] = model_steps(
            config, dataset, plan, train_vit, config.vit, "vit", tags, registered["cnn"] if teacher else None,
            **teacher)
    if config.promotion.enabled and any(registered.values()):
        promote_models(dataset, config.registry, config.promotion, **registered, **predictions)
