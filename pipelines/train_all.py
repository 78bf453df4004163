"""Pipeline ``train_all``: ingest -> rebalance -> train -> evaluate -> register per contender -> promote."""

from zenml import pipeline

from fercore.config import Config, step_suffix
from fercore.models.vit import vit_variant
from pipelines.deploy import training_settings
from pipelines.ingest import data_steps
from steps.evaluate_model import evaluate_model
from steps.promote_models import promote_models
from steps.register_model import register_model
from steps.train_cnn import train_cnn
from steps.train_vit import train_vit

TRAIN_STEPS = {"cnn": train_cnn, "vit": train_vit}


def contender_steps(config: Config, name: str, dataset, plan, teacher=None):
    """Wires ``train_<name>`` -> ``evaluate_<name>`` -> ``register_<name>`` for one contender; returns its
    model, its registration and its val/test predictions (which promotion reuses instead of scoring it again).

    Args:
        teacher: the teacher contender's ``(model, registration)``, when it distills from one of this run's.
    """
    cfg, suffix = config.contenders[name], step_suffix(name)
    tags = {"contender": name}
    if cfg.family == "vit":
        tags["checkpoint"] = vit_variant(cfg)
        if cfg.distill.enabled:
            tags["distill_teacher"] = cfg.distill.teacher
    inputs = {"teacher": teacher[0]} if teacher else {}
    model, training, run_id = TRAIN_STEPS[cfg.family].with_options(settings=training_settings(config))(
        dataset, plan, cfg, name, config.registry, config.checkpoint_dir,
        ddp_processes=config.resources.ddp_processes, id=f"train_{suffix}", **inputs)
    evaluation, val_evaluation, predictions = evaluate_model(
        model, dataset, training, run_id, config.registry, cfg.tta, cfg.mixed_precision, id=f"evaluate_{suffix}")
    registration = register_model(model, evaluation, val_evaluation, run_id, dataset, config.registry, cfg.family,
                                  cfg.tta, cfg.mixed_precision, tags, teacher[1] if teacher else None,
                                  id=f"register_{suffix}")
    return model, registration, predictions


@pipeline(name="fer_train_all")
def train_all_pipeline(config: Config) -> None:
    """Trains, evaluates and registers every enabled contender on FER-2013, then promotes (fan-in)."""
    dataset, plan = data_steps(config)
    trained: dict[str, tuple] = {}
    for name in config.training_order():  # a teacher before its students
        teacher = config.teacher_of(name)
        trained[name] = contender_steps(config, name, dataset, plan, trained[teacher][:2] if teacher else None)
    if config.promotion.enabled and trained:
        promote_models(dataset, config.registry, config.promotion, [t[1] for t in trained.values()],
                       [t[2] for t in trained.values()])
