"""Pipeline ``train_all``: ingest -> rebalance -> train (in rungs) -> evaluate -> register per contender -> promote."""

from zenml import pipeline

from fercore.config import SPARE_SEED_STEPS, Config, step_suffix
from fercore.models.vit import vit_variant
from fercore.training.contest import initial_state
from pipelines.ingest import data_steps
from pipelines.settings import training_settings
from steps.common import CONTENDER
from steps.evaluate_model import evaluate_model
from steps.find_warm_starts import find_warm_starts
from steps.judge_rung import judge_rung
from steps.promote_models import promote_models
from steps.register_model import register_model
from steps.train_cnn import train_cnn
from steps.train_spare_seed import train_spare_seed
from steps.train_vit import train_vit

TRAIN_STEPS = {"cnn": train_cnn, "vit": train_vit}


def train_step_id(name: str, rung: int) -> str:
    """``train_<name>`` for the first (or only) rung, ``train_<name>_rung<k>`` for the k-th."""
    return f"train_{step_suffix(name)}" + (f"_rung{rung + 1}" if rung else "")


def train_steps(config: Config, name: str, dataset, plan, rung: int = 0, previous=None, teacher=None, **inputs):
    """Wires one rung of contender ``name``; returns its (model, training, MLflow run, validation probabilities).

    Args:
        previous: the contender's outputs after the last rung (later rungs).
        teacher: the teacher contender's model, when it distills from one of this run's (no rungs then).
        inputs: ``contest``, ``warm_starts`` and ``judged`` for the step.
    """
    cfg = config.contenders[name]
    if previous is not None:
        inputs.update(previous_model=previous[0], previous_training=previous[1], previous_run=previous[2])
    if teacher is not None:
        inputs["teacher"] = teacher
    options = {"settings": training_settings(config), "substitutions": {CONTENDER: step_suffix(name)}}
    return TRAIN_STEPS[cfg.family].with_options(**options)(
        dataset, plan, cfg, name, config.registry, config.checkpoint_dir, ddp_processes=config.resources.ddp_processes,
        id=train_step_id(name, rung), **inputs)


def contest_steps(config: Config, dataset, plan, warm_starts) -> dict[str, tuple]:
    """Every rung of every contender, a ``judge_rung<k>`` after each rung but the last: the contenders of a rung
    are independent steps (parallel pods on Kubeflow), and each later rung waits for the judgement."""
    names, rungs = config.training_order(), config.contest.rungs
    state, trained = initial_state(config), {}
    for k in range(len(rungs)):
        judged = k < len(rungs) - 1
        for name in names:
            first = {"warm_starts": warm_starts} if k == 0 else {}
            trained[name] = train_steps(config, name, dataset, plan, k, trained.get(name), contest=state,
                                        judged=judged or _picks_spare(config, name), **first)
        if judged:
            state = judge_rung(dataset, state, names, [trained[n][3] for n in names], config.promotion.metric,
                               config.contest.resamples, id=f"judge_rung{k + 1}")
    return trained


def _picks_spare(config: Config, name: str) -> bool:
    """Whether ``name``'s last rung returns validation probabilities, for the spare seed's pick of its leader."""
    return name in config.contest.spare_seed.of


def spare_seed_steps(config: Config, dataset, plan, trained: dict[str, tuple]) -> tuple:
    """Wires ``train_spare_seed`` after every contender's last rung (:mod:`steps.train_spare_seed`)."""
    names, of = config.training_order(), config.contest.spare_seed.of
    options = {"settings": training_settings(config), "substitutions": {CONTENDER: SPARE_SEED_STEPS}}
    return train_spare_seed.with_options(**options)(dataset, plan, config, names, [trained[n][1] for n in names],
                                                    [trained[n][3] for n in of], id=f"train_{SPARE_SEED_STEPS}")


def evaluate_and_register(config: Config, name: str, dataset, trained: tuple, teacher_registration=None):
    """Wires ``evaluate_<name>`` -> ``register_<name>``; returns the registration, the val/test predictions
    (which promotion reuses instead of scoring the model again) and the class activation maps. The spare seed's
    (``name`` :data:`SPARE_SEED_STEPS`) evaluate with the settings its candidates share; its MLflow run names its contender."""
    spare = name == SPARE_SEED_STEPS
    cfg, suffix = config.contenders[config.contest.spare_seed.of[0] if spare else name], step_suffix(name)
    model, training, run = trained[:3]
    tags = {}
    if cfg.family == "vit":
        tags["checkpoint"] = vit_variant(cfg)
        if cfg.distill.enabled:
            tags["distill_teacher"] = cfg.distill.teacher
    named = {CONTENDER: suffix}  # the artifacts' names (``<suffix>_test_evaluation``)
    evaluation, val_evaluation, predictions, explanation = evaluate_model.with_options(substitutions=named)(
        model, dataset, training, run, config.registry, cfg.tta, cfg.mixed_precision, config.explain,
        id=f"evaluate_{suffix}")
    registration = register_model.with_options(substitutions=named)(
        model, evaluation, val_evaluation, run, dataset, config.registry, cfg.family, cfg.tta, cfg.mixed_precision,
        tags, teacher_registration, training, predictions, id=f"register_{suffix}")
    return registration, predictions, explanation


@pipeline(name="fer_train_all")
def train_all_pipeline(config: Config) -> None:
    """Trains (in the contest's rungs), evaluates and registers every enabled contender on FER-2013, then
    promotes (fan-in)."""
    dataset, plan = data_steps(config)
    warm_starts = find_warm_starts(dataset, config) if config.training.continues() else None
    if config.has_rungs():
        trained = contest_steps(config, dataset, plan, warm_starts)
    else:
        trained = {}
        for name in config.training_order():  # a teacher before its students
            teacher = config.teacher_of(name)
            trained[name] = train_steps(config, name, dataset, plan, teacher=trained[teacher][0] if teacher else None,
                                        warm_starts=warm_starts, judged=_picks_spare(config, name))
    if config.contest.spare_seed.of:
        trained[SPARE_SEED_STEPS] = spare_seed_steps(config, dataset, plan, trained)
    registered = {}
    for name in [*config.training_order(), *([SPARE_SEED_STEPS] if config.contest.spare_seed.of else [])]:
        teacher = None if name == SPARE_SEED_STEPS else config.teacher_of(name)
        registered[name] = evaluate_and_register(config, name, dataset, trained[name],
                                                 registered[teacher][0] if teacher else None)
    if config.promotion.enabled and registered:
        promote_models(dataset, config.registry, config.promotion, [r[0] for r in registered.values()],
                       [r[1] for r in registered.values()], [r[2] for r in registered.values()])


def print_summary(run, config: Config) -> None:
    """The end of a ``train_all`` on the console: what the contest and the promotion decided, where to look."""
    import sys
    from pathlib import Path

    from fercore.promotion.console import as_typed, console_summary
    from fercore.tracking.store import run_url

    step = run.steps.get("promote_models")
    if step is None:
        return
    summary = step.outputs["promotion"][0].load()
    spare = run.steps.get(f"train_{SPARE_SEED_STEPS}")
    if spare is not None:  # what the unused minutes trained, before the promotion's table that judges it
        print(f"\nSpare seed: {spare.outputs[f'{SPARE_SEED_STEPS}_training'][0].load()['spare_seed']}")
    url = run_url(config.registry.tracking_uri, summary["promotion_run"])
    print(console_summary(summary, config.registry.model_name, url, run.name, as_typed(sys.executable, Path.cwd())))
