"""The project configuration: one YAML file per use (``configs/``), checked before any work.

Unknown keys and bad values fail at load time with the offending key named.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fercore.errors import ConfigError
from fercore.safe_yaml import BoundsError, load_bounded

TtaMode = Literal["none", "hflip", "shift", "tencrop", "grid"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class DataConfig(_Strict):
    """Where FER-2013 comes from and how it is split."""

    source: str = Field("kaggle", description="'kaggle', or a folder / .zip / .tar.gz / fer2013.csv path")
    incoming: list[str] = Field([], description="new labelled batches (class folders, or archives of them), or "
                                "folders of such batches, added to the training split")
    kaggle_dataset: str = Field("msambare/fer2013", description="the Kaggle dataset handle (--data kaggle)")
    cache_dir: str | None = Field(None, description="default: $FER_CACHE_DIR or ~/.cache/fer-mlops")
    use_cache: bool = Field(True, description="reuse decoded arrays of the same source (by content hash)")
    validation: Literal["public_test", "carve"] = Field(
        "public_test", description="the split every decision reads: FER-2013's PublicTest (the literature's protocol: "
        "train on all of Training, choose on PublicTest, report on PrivateTest), or 'carve': val_fraction of train "
        "(for sources without PublicTest)")
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="with validation: carve, the share of train carved "
                                "out as the stratified validation split")
    seed: int = Field(42, description="the validation split's seed")
    drop_test_overlap: bool = Field(False, description="drop train copies of images that are also in test")
    max_per_class: int | None = Field(None, ge=1, description="keep at most this many images of the source per split and "
                                      "class (incoming batches are kept whole)")
    min_image_size: int = Field(16, ge=1, description="images whose shorter side is smaller are refused")
    max_image_pixels: int = Field(4_000_000, ge=1, description="images with more pixels are refused (from the header, "
                                  "before decoding)")
    on_bad_size: Literal["error", "skip"] = Field("error", description="refused images stop the run, or are "
                                                  "skipped and counted")

    def image_limits(self):
        from fercore.data.images import ImageLimits

        return ImageLimits(self.min_image_size, self.max_image_pixels, self.on_bad_size)


class RebalanceConfig(_Strict):
    """How the training split is rebalanced (see :mod:`fercore.data.rebalance`)."""

    method: Literal["resample", "class_weights", "none"] = Field(
        "resample", description="resample: inverse-frequency resampling with replacement, drawn afresh each epoch "
        "(the paper's); class_weights: a weighted loss; none")
    seed: int = Field(42, description="the resampling seed")
    size: int | None = Field(None, ge=1, description="rows drawn by 'resample'; default the train split's size")
    power: float = Field(1.0, ge=0.0, le=1.0, description="'resample' draws rows with probability count(class)**-power")


class AugmentConfig(_Strict):
    """Random augmentation of training batches."""

    hflip: bool = Field(True, description="random horizontal flips")
    crop_padding: int = Field(4, ge=0, le=16, description="random shifts of up to this many pixels")
    crop_size: int | None = Field(None, ge=16, le=48, description="train on random crop_size x crop_size windows "
                                  "at native scale (fewer pixels per step); validation and test-time views are cut "
                                  "to that size (the model records it)")
    rotation_degrees: float = Field(10.0, ge=0.0, le=45.0, description="random rotations of up to this many degrees")
    erasing: float = Field(0.0, ge=0.0, le=1.0, description="probability of random erasing")


class StepResources(_Strict):
    """CPU and memory of the steps that do not train (ZenML ResourceSettings)."""

    cpu_count: float | None = Field(None, gt=0, description="CPUs of each step that does not train")
    memory: str | None = Field(None, description="memory of each step that does not train, e.g. '8GB'")


class ResourcesConfig(_Strict):
    """What the GPU-backed training steps ask of the orchestrator (ZenML ResourceSettings, pod settings)."""

    gpu_count: int = Field(1, ge=0, description="GPUs requested by each training step")
    cpu_count: float | None = Field(None, gt=0, description="CPUs requested by each training step")
    memory: str | None = Field(None, description="memory of each training step, e.g. '16GB'")
    ddp_processes: int | Literal["all_gpus"] = Field(
        1, description="data-parallel processes per training step: 1 (off), a number, or all_gpus (one per GPU)")
    gpu_node_selectors: dict[str, str] = Field(
        {}, description="training pods' node selectors; Kubeflow (KFP v2) sets the GPU limit only with "
        "'accelerator: <GPU type>' among them")
    gpu_tolerations: list[dict[str, Any]] = Field(
        [], description="training pods' tolerations (Kubernetes orchestrator; KFP v2 ignores them)")
    other_steps: StepResources = StepResources()

    @field_validator("ddp_processes")
    @classmethod
    def _positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("must be at least 1 (1 trains in one process)")
        return value


class DockerConfig(_Strict):
    """The step image for a containerized orchestrator (Kubeflow, Kubernetes): ZenML DockerSettings."""

    parent_image: str | None = Field(None, description="an image with CUDA PyTorch and torchvision; default ZenML's")
    skip_build: bool = Field(False, description="run parent_image as it is: it must hold the project's code "
                             "and requirements already")
    requirements: str | None = Field("constraints.txt", description="pip freeze installed in the image, less "
                                     "what the parent image provides (exclude); null: pyproject's ranges")
    exclude: list[str] = Field(["torch", "torchvision", "torchaudio", "triton", "nvidia-*", "cuda-*"],
                               description="requirements left to the parent image (fnmatch patterns)")
    apt_packages: list[str] = []
    environment: dict[str, str] = Field({}, description="environment variables of every step")
    secrets: list[str] = Field([], description="ZenML secrets whose keys become environment variables of every "
                               "step (e.g. KAGGLE_USERNAME / KAGGLE_KEY)")


class TrainingConfig(_Strict):
    """What every trained model shares: optimisation, early stopping, precision, augmentation."""

    enabled: bool = Field(True, description="false: the contender is not trained")
    epochs: int = Field(40, ge=1, description="at most this many epochs (early stopping and max_train_minutes may end "
                        "training sooner)")
    batch_size: int = Field(128, ge=1, description="images per batch")
    grad_accumulation: int = Field(1, ge=1, description="batches whose gradients are summed per optimizer step")
    optimizer: Literal["adam", "adamw", "sgd"] = Field("adamw", description="adamw, adam or sgd (momentum 0.9)")
    learning_rate: float = Field(2e-3, gt=0.0, description="the peak learning rate")
    weight_decay: float = Field(5e-4, ge=0.0, description="weight decay")
    scheduler: Literal["none", "cosine", "onecycle"] = Field("onecycle", description="the learning-rate schedule: "
                                                              "onecycle, cosine or none")
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="label smoothing of the cross-entropy")
    patience: int = Field(8, ge=1, description="epochs without a lower validation loss before stopping, counted "
                          "once the schedule has brought the rate down to half its peak")
    mixed_precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto", description="auto: bf16 autocast on CUDA (fp16 where bf16 is unsupported) and on CPUs with native "
        "bf16 (AVX512-BF16 or AMX), fp32 on other CPUs; bf16 forces it, fp32 turns autocast off")
    channels_last: bool = Field(True, description="channels-last convolutions (faster with oneDNN and on CUDA)")
    compile: bool = Field(False, description="torch.compile the training forward and backward (CPUs need a C++ "
                          "compiler, else training stays eager); about 40 s of compilation, then faster steps")
    ema_decay: float | None = Field(
        None, gt=0.0, lt=1.0, description="keep an exponential moving average of the weights (and batch-norm "
        "statistics), updated every optimizer step with this decay; every epoch validates it beside the raw "
        "weights and the better of the two (by validation loss) is kept (kept_weights says which)")
    tta: TtaMode = Field("hflip", description="test-time views averaged: none, the mirror, mirror and 2-px shifts, "
                        "tencrop (corners and centre, and mirrors), or grid (every window 2 px apart, and mirrors), "
                        "cut to the model's input size")
    seed: int = Field(42, description="the seed of initialisation, batches and augmentation")
    max_train_images: int | None = Field(None, ge=1, description="cap on rows per epoch (smoke runs)")
    max_train_minutes: float | None = Field(
        None, gt=0, description="training time budget: the schedule anneals to its end within it, then training stops")
    augment: AugmentConfig = AugmentConfig()

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _legacy_bool(cls, value: Any) -> Any:
        return {True: "auto", False: "fp32"}.get(value, value) if isinstance(value, bool) else value


class CnnConfig(TrainingConfig):
    """The CNN trained from scratch."""

    architecture: Literal["v1", "v2_1", "vgg7", "resnet"] = Field(
        "vgg7", description="v1 and v2_1 (the paper's), vgg7 (VGG-style, fast on CPUs), resnet (residual blocks "
        "for 48x48 input)")
    width: int = Field(32, ge=8, le=256, description="channels of the first stage of vgg7 and resnet")
    dropout: float = Field(0.3, ge=0.0, lt=1.0, description="dropout before the classifier")

    def model_kwargs(self) -> dict[str, Any]:
        return {"dropout": self.dropout, **({"width": self.width} if self.architecture in ("vgg7", "resnet") else {})}


class FreezeConfig(_Strict):
    """Gradual unfreezing of a pretrained ViT: the head first, then the top encoder blocks."""

    initial_trainable_blocks: int = Field(0, ge=0, description="encoder blocks trained from the first epoch")
    unfreeze_every_epochs: int = Field(1, ge=1, description="epochs between two unfreezing steps")
    blocks_per_unfreeze: int = Field(2, ge=0, description="blocks unfrozen at each step (0: never)")

    def trainable_blocks(self, epoch: int) -> int:
        """Top encoder blocks that train in ``epoch`` (0-based); all of them once it exceeds the depth."""
        return self.initial_trainable_blocks + self.blocks_per_unfreeze * (epoch // self.unfreeze_every_epochs)


class ScratchVitConfig(_Strict):
    """A small ViT for 48x48 grayscale input, trained from scratch (when ``vit.checkpoint`` is null)."""

    tokenizer: Literal["patch", "conv"] = Field("patch", description="patch: ViT's patchify (patch_size); conv: "
                                                "stride-2 conv layers (stem_channels, then hidden_size)")
    image_size: int = Field(48, ge=8, description="input size in pixels")
    patch_size: int = Field(6, ge=1, description="patch tokenizer only")
    stem_channels: list[int] = Field([32, 64], description="conv tokenizer: channels of the stride-2 convs before "
                                     "the last one; len + 1 halvings of the image give the token grid")
    hidden_size: int = Field(192, ge=8, description="token width")
    layers: int = Field(6, ge=1, description="encoder layers")
    heads: int = Field(3, ge=1, description="attention heads")
    mlp_dim: int = Field(384, ge=8, description="hidden width of the encoder's MLPs")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="conv tokenizer: dropout in the encoder layers")
    drop_path: float = Field(0.1, ge=0.0, lt=1.0, description="conv tokenizer: stochastic depth of the last layer")
    pooling: Literal["cls", "mean", "seq"] = Field(
        "cls", description="cls token (patch only), mean of the tokens, or seq: attention-weighted sequence pooling "
        "(conv only)")

    @model_validator(mode="after")
    def _pooling_fits_tokenizer(self) -> ScratchVitConfig:
        wrong = {"patch": "seq", "conv": "cls"}[self.tokenizer]
        if self.pooling == wrong:
            raise ValueError(f"pooling '{wrong}' does not exist for the {self.tokenizer} tokenizer")
        if self.hidden_size % self.heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by heads {self.heads}")
        return self


class DistillConfig(_Strict):
    """Soft targets from a teacher (knowledge distillation, Hinton et al. 2015) for the ViT."""

    enabled: bool = Field(False, description="learn from a teacher's soft targets as well as the labels (the "
                          "version is tagged distill_teacher: a student is no independent contender)")
    teacher: str = Field("cnn", description="an enabled contender of this run (its name), or a registry URI, e.g. "
                         "models:/fer2013-emotion@champion-happy or models:/fer2013-emotion/3")
    alpha: float = Field(0.5, ge=0.0, le=1.0, description="weight of the teacher's soft targets in the loss")
    temperature: float = Field(2.0, gt=0.0, description="temperature of the teacher's and the student's softmax")


class VitConfig(TrainingConfig):
    """The Vision Transformer: a pretrained checkpoint fine-tuned, or a small one from scratch."""

    checkpoint: str | None = Field("google/vit-base-patch16-224",
                                   description="hub name or save_pretrained folder; null trains `scratch`")
    image_size: int | None = Field(None, ge=16, description="feed a pretrained ViT at this size instead of its own")
    scratch: ScratchVitConfig = ScratchVitConfig()
    head_hidden: list[int] = Field([1024, 512, 256, 128], description="hidden widths of the MLP head (5 layers)")
    head_dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout between the head's layers")
    freeze: FreezeConfig = FreezeConfig()
    distill: DistillConfig = DistillConfig()
    epochs: int = Field(10, ge=1, description="at most this many epochs")
    batch_size: int = Field(64, ge=1, description="images per batch")
    learning_rate: float = Field(1e-4, gt=0.0, description="the paper compared 1e-3, 1e-4 and 1e-5")
    weight_decay: float = Field(0.01, ge=0.0, description="weight decay")
    scheduler: Literal["none", "cosine", "onecycle"] = Field("cosine", description="the learning-rate schedule")
    patience: int = Field(3, ge=1, description="epochs without a lower validation loss before stopping, counted "
                          "once the schedule has brought the rate down to half its peak")
    channels_last: bool = Field(False, description="channels-last memory format (for the conv tokenizer)")


class CnnContender(CnnConfig):
    """A contender of the CNN family: a CNN trained from scratch."""

    family: Literal["cnn"] = Field(description="cnn")


class VitContender(VitConfig):
    """A contender of the ViT family: a pretrained ViT fine-tuned, or a small one from scratch."""

    family: Literal["vit"] = Field(description="vit")


Contender = Annotated[CnnContender | VitContender, Field(discriminator="family")]
CONTENDER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,39}$")


def step_suffix(name: str) -> str:
    """A contender's name as it appears in step names (``train_<suffix>``) and tags: lowercase, ``_`` for ``-``."""
    return name.lower().replace("-", "_")


class RegistryConfig(_Strict):
    """MLflow tracking and model registry."""

    tracking_uri: str | None = Field(None, description="default: $MLFLOW_TRACKING_URI, the ZenML stack's tracker, or ./mlflow.db")
    experiment_name: str = Field("fer2013-emotion", description="the MLflow experiment of the runs")
    model_name: str = Field("fer2013-emotion", description="the registered model whose versions and aliases "
                            "promotion manages")


class PromotionConfig(_Strict):
    """How the promotion step picks champions and reacts to drift."""

    enabled: bool = Field(True, description="run promote_models after the contenders are registered")
    metric: Literal["macro_f1", "accuracy", "weighted_f1"] = Field("macro_f1", description="the overall metric "
                                                                   "that decides champion and challenger")
    min_margin: float = Field(0.0, ge=0.0, description="a new champion must beat the current one by this much")
    require_significance: bool = Field(
        True, description="an alias moves only on a lead whose bootstrap 95 % interval on the validation images "
        "excludes zero; false: any lead (beyond min_margin for champion) moves it")
    bootstrap_resamples: int = Field(1000, ge=100, description="resamples of the validation images for the interval")
    ensemble: bool = Field(True, description="register the routed ensemble of the per-emotion champions")
    averaging: bool = Field(True, description="register the probability-averaging ensemble that greedy selection "
                            "picks from the library (this run's contenders and earlier runs' registered models; "
                            "temperatures and weights fitted on validation) as a candidate for champion")
    max_members: int = Field(4, ge=1, description="the largest ensemble that may hold champion (each member is one "
                             "more network run per face); the champion is the best model by metric within it")
    max_predict_ms: float | None = Field(None, gt=0.0, description="the most an ensemble may take to predict one "
                                         "face: the sum of its members' predict_ms, each measured at registration "
                                         "(null: no budget); none that fits: single models only. A champion "
                                         "above it (the budget lowered since it won) is replaced by the best that fits")
    drift_share: float = Field(0.5, gt=0.0, le=1.0, description="share of drifted image statistics = dataset drift")
    on_drift: Literal["warn", "block"] = Field("warn", description="'block' moves no alias when drift is detected")
    drift_max_images: int = Field(3000, ge=50, description="images per side in the drift reports")


class RetentionConfig(_Strict):
    """``run.py gc``: what old runs and versions are kept (alias holders, the members of kept ensembles, the runs
    kept versions came from and a run in progress are always kept)."""

    keep_versions: int = Field(5, ge=1, description="registered versions kept per contender and per ensemble kind, "
                               "newest first")
    keep_runs: int = Field(10, ge=1, description="other MLflow runs (promotion, monitoring, failed training) and "
                           "ZenML runs per pipeline kept, newest first")
    after_run: bool = Field(False, description="run gc after each train_all (a schedule's disk stays bounded)")


class ExplainConfig(_Strict):
    """Class activation maps (HiResCAM, each face's averaged over the model's test-time views) in each
    ``evaluate_<name>`` step and in promotion (docs/explain.md)."""

    enabled: bool = Field(True, description="draw the maps: per emotion the mean map and a gallery of test faces")
    faces_per_emotion: int = Field(3, ge=1, le=16, description="gallery: the most confident correct and the most "
                                   "confident wrong test faces shown per predicted emotion, this many of each")
    # 50: a mean of 50 view-averaged maps is as steady as one of 100 single-view maps, in half the time
    mean_map_faces: int = Field(50, ge=1, description="validation faces the model got right averaged into each "
                                "emotion's mean map (a seeded sample when it got more right)")


class MonitorConfig(_Strict):
    """``run.py --pipeline monitor``: new images checked against the champion's training data."""

    data: str | None = Field(None, description="folder or archive of new images (--data sets it for monitor)")
    model: str = Field("champion", description="alias of registry.model_name that is monitored")
    on_drift: Literal["report", "retrain"] = Field("report", description="retrain: start train_all with the batch's "
                                                   "labelled faces as an incoming batch")
    drift_share: float = Field(0.5, gt=0.0, le=1.0, description="share of drifted image statistics = drift")
    max_images: int = Field(3000, ge=50, description="images per side in the drift reports")
    incoming_dir: str = Field("incoming", description="where a retrain writes the batch (added to data.incoming)")
    on_unreadable: Literal["error", "skip"] = Field("error", description="unreadable image files stop the run "
                                                    "(all are named), or are skipped and counted")


SPARE_SEED_STEPS = "spare_seed"  # the spare seed's steps and artifacts (train_spare_seed, spare_seed_model, ...)


class SpareSeedConfig(_Strict):
    """Another seed of the leading contender, trained with the minutes the contest left unused."""

    of: list[str] = Field([], description="contenders (one family, the same tta and mixed_precision, none distilled) "
                          "whose leader on validation after the last rung trains once more, from a new seed, with the "
                          "minutes the run left unused (every contender's max_train_minutes less what it trained); "
                          "registered as a version of that contender, an independent member for the ensembles. []: off")
    min_minutes: float = Field(3.0, gt=0, description="the spare seed trains at least this long, beyond the "
                               "contenders' budgets when they leave fewer minutes unused")


class ContestConfig(_Strict):
    """How the contest spends the training minutes: successive halving in rungs (Hyperband's idea)."""

    rungs: list[float] = Field([1.0], description="cumulative shares of each contender's budget (max_train_minutes and "
                               "epochs) at which the contest is judged on validation, e.g. [0.25, 1.0]: after the first "
                               "quarter a contender that can no longer win any emotion (nor overall) stops, and its "
                               "unused budget goes to those that go on (in minutes when every contender has "
                               "max_train_minutes, else in shares of their own budgets); each rung restarts the "
                               "schedule from the last rung's weights. Increasing, the last 1.0; [1.0]: no rungs")
    resamples: int = Field(1000, ge=100, description="bootstrap resamples of the validation images per judgement")
    spare_seed: SpareSeedConfig = SpareSeedConfig()

    @field_validator("rungs")
    @classmethod
    def _increasing_to_one(cls, rungs: list[float]) -> list[float]:
        if not rungs:
            raise ValueError("is empty: give at least [1.0] (no rungs)")
        if any(not 0 < r <= 1 for r in rungs):
            raise ValueError(f"{rungs}: every rung is a share of the budget in (0, 1]; more than 1 exceeds it")
        if any(b <= a for a, b in zip(rungs, rungs[1:])):
            raise ValueError(f"{rungs} does not increase: each rung is a larger share of the budget than the last")
        if rungs[-1] != 1.0:
            raise ValueError(f"{rungs} ends at {rungs[-1]}: the last rung is 1.0, the whole budget")
        return rungs


class RunTrainingConfig(_Strict):
    """Where this run's training starts."""

    continue_from: Literal["none", "latest"] | None = Field(
        None, description="latest: each contender continues from its latest registered version trained on the same "
        "validation images with the same network (a warm restart of its schedule; otherwise it starts fresh and "
        "says why); none: from scratch (or the pretrained checkpoint). Default: none, and latest in the config "
        "that --schedule writes")

    def continues(self) -> bool:
        return self.continue_from == "latest"


class ScheduleConfig(_Strict):
    """When ``run.py --schedule`` retrains."""

    cron: str = Field("0 3 * * 1", description="when run.py --schedule retrains (crontab syntax)")


class Config(_Strict):
    """The whole project configuration."""

    data: DataConfig = DataConfig()
    rebalance: RebalanceConfig = RebalanceConfig()
    contenders: dict[str, Contender] = Field(
        default_factory=lambda: {"cnn": CnnContender(family="cnn"), "vit": VitContender(family="vit")},
        description="the models trained and judged per emotion: name -> {family: cnn | vit, that family's settings}")
    contest: ContestConfig = ContestConfig()
    training: RunTrainingConfig = RunTrainingConfig()
    registry: RegistryConfig = RegistryConfig()
    promotion: PromotionConfig = PromotionConfig()
    resources: ResourcesConfig = ResourcesConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    monitor: MonitorConfig = MonitorConfig()
    retention: RetentionConfig = RetentionConfig()
    explain: ExplainConfig = ExplainConfig()
    docker: DockerConfig | None = Field(None, description="the step image on a containerized orchestrator")
    checkpoint_dir: str = Field("checkpoints", description="per-epoch checkpoints for resuming; relative: under "
                                "the artifact store's root on a remote stack")

    @field_validator("contenders")
    @classmethod
    def _names(cls, contenders: dict[str, Any]) -> dict[str, Any]:
        seen: dict[str, str] = {}
        for name in contenders:
            if not CONTENDER_NAME.match(name):
                raise ValueError(f"contender name '{name}' must start with a letter and hold only letters, digits, "
                                 "'_' and '-' (at most 40): it names steps and tags")
            if step_suffix(name) == SPARE_SEED_STEPS:
                raise ValueError(f"contender name '{name}' would name the spare seed's steps (train_{SPARE_SEED_STEPS}): "
                                 "rename it")
            if step_suffix(name) in seen:
                raise ValueError(f"contenders '{seen[step_suffix(name)]}' and '{name}' would both name steps "
                                 f"train_{step_suffix(name)}: rename one")
            seen[step_suffix(name)] = name
        return contenders

    @model_validator(mode="after")
    def _teachers_are_contenders(self) -> Config:
        for name, c in self.enabled_contenders().items():
            d = getattr(c, "distill", None)
            if d is None or not d.enabled or d.teacher.startswith("models:/"):
                continue
            teacher = self.contenders.get(d.teacher)
            if teacher is None or not teacher.enabled or d.teacher == name:
                enabled = ", ".join(n for n in self.enabled_contenders() if n != name) or "none"
                raise ValueError(f"contenders.{name}.distill.teacher '{d.teacher}' is not another enabled contender "
                                 f"(enabled: {enabled}); name one, or a registered model (models:/NAME@ALIAS)")
        self.training_order()  # refuses a cycle of teachers
        self._rungs_have_budgets()
        self._spare_seed_fits()
        return self

    def _spare_seed_fits(self) -> None:
        """``contest.spare_seed.of``: enabled contenders of one kind (the spare's evaluation and registration steps are
        wired before the leader is known), none distilled, every contender's budget in minutes."""
        of, enabled = self.contest.spare_seed.of, self.enabled_contenders()
        where = "contest.spare_seed.of"
        unknown = [n for n in of if n not in enabled]
        if unknown:
            raise ValueError(f"{where} names {unknown}, not enabled contenders (enabled: {', '.join(enabled)})")
        if not of:
            return
        untimed = [n for n, c in enabled.items() if not c.max_train_minutes]
        if untimed:
            raise ValueError(f"{where} trains with the minutes the contenders leave unused, but {untimed} have no "
                             "max_train_minutes: give every contender one, or set contest.spare_seed.of: []")
        kinds = {"family": lambda c: c.family, "tta": lambda c: c.tta, "mixed_precision": lambda c: c.mixed_precision,
                 "checkpoint": lambda c: getattr(c, "checkpoint", None) or getattr(c, "scratch", None) and c.scratch.tokenizer}
        for key, kind in kinds.items():
            values = {n: kind(enabled[n]) for n in of}
            if len(set(values.values())) > 1:
                raise ValueError(f"{where}: {values} differ in {key}; list contenders that share it")
        distilled = [n for n in of if getattr(enabled[n], "distill", None) is not None and enabled[n].distill.enabled]
        if distilled:
            raise ValueError(f"{where}: {distilled} distill from a teacher, which a spare seed trains without; "
                             "leave them out")

    def _rungs_have_budgets(self) -> None:
        if not self.has_rungs():
            return
        for name in self.enabled_contenders():
            if self.teacher_of(name):
                raise ValueError(f"contenders.{name}.distill.teacher '{self.teacher_of(name)}' trains in this run's "
                                 "rungs, so there is no finished teacher to distill from: name a registered model "
                                 "(models:/NAME@ALIAS), or contest.rungs: [1.0]")

    def has_rungs(self) -> bool:
        """Whether training runs in rungs: more than one rung, and more than one contender to judge."""
        return len(self.contest.rungs) > 1 and len(self.enabled_contenders()) > 1

    def enabled_contenders(self) -> dict[str, CnnContender | VitContender]:
        return {name: c for name, c in self.contenders.items() if c.enabled}

    def teacher_of(self, name: str) -> str | None:
        """The contender ``name`` distills from, if it distills from one of this run's."""
        d = getattr(self.contenders[name], "distill", None)
        return d.teacher if d is not None and d.enabled and not d.teacher.startswith("models:/") else None

    def training_order(self) -> list[str]:
        """Enabled contenders, each after its teacher (otherwise in the config's order)."""
        order: list[str] = []
        pending = list(self.enabled_contenders())
        while pending:
            ready = [n for n in pending if self.teacher_of(n) in (None, *order)]
            if not ready:
                raise ValueError(f"contenders {', '.join(pending)} distill from each other in a cycle")
            order.append(ready[0])
            pending.remove(ready[0])
        return order


_OLD_SECTIONS = ("cnn", "vit")


def _refuse_old_sections(raw: dict[str, Any], origin: str) -> None:
    """The ``cnn:`` / ``vit:`` sections of earlier configs, refused with the same settings in the new form."""
    old = [k for k in _OLD_SECTIONS if k in raw]
    if not old:
        return
    new = {"contenders": {k: {"family": k, **(raw[k] or {})} for k in old}}
    example = yaml.safe_dump(new, sort_keys=False, default_flow_style=None, width=100).rstrip()
    raise ConfigError(f"{origin}: the {' and '.join(k + ':' for k in old)} section{'s are' if len(old) > 1 else ' is'} "
                      "no longer read: every model is an entry of contenders:, named, with its family. The same "
                      f"settings in the new form:\n\n{example}\n\n(--set {old[0]}.KEY=VALUE becomes --set "
                      f"contenders.{old[0]}.KEY=VALUE)")


def _describe(error: ValidationError, origins: dict[str, str] | None = None) -> str:
    lines = []
    for e in error.errors():
        loc = list(e["loc"])
        if loc[:1] == ["contenders"] and len(loc) > 2 and loc[2] in ("cnn", "vit"):
            del loc[2]  # pydantic names the family (the union's tag) in the path: contenders.NAME.cnn.KEY
        key = ".".join(str(p) for p in loc)
        key = key or "config"
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, ")
        # the override of that key, of a key inside it, or of the section that holds it (--set foo.bar=1: "foo")
        origin = next((o for k, o in (origins or {}).items()
                       if key == k or key.startswith(k + ".") or k.startswith(key + ".")), None)
        lines.append(f"  {key}: {msg}" + (f" (from {origin})" if origin else ""))
    return "\n".join(lines)


def parse_config(raw: dict[str, Any], origin: str = "config", origins: dict[str, str] | None = None) -> Config:
    """Validates a mapping; raises :class:`ConfigError` naming each bad key (and the override that set it)."""
    _refuse_old_sections(raw or {}, origin)
    try:
        return Config.model_validate(raw or {})
    except ValidationError as exc:
        raise ConfigError(f"{origin} is invalid:\n{_describe(exc, origins)}") from None


def load_config(path: str | Path, overrides: dict[str, Any] | None = None,
                origins: dict[str, str] | None = None) -> Config:
    """Reads a YAML config and applies dotted-key overrides (``{"data.source": "x"}``).

    Args:
        path: the YAML file.
        overrides: dotted key -> value, applied over the file.
        origins: dotted key -> where its override came from (e.g. ``--set cnn.epochs=abc``), named in
            errors instead of the file; default ``override KEY=VALUE``.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist. Pick one in configs/ or pass --config PATH.")
    try:
        raw = load_bounded(path.read_text(encoding="utf-8"), str(path))
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text YAML file (it is not UTF-8 text): pass a config such as "
                          "configs/cpu.yaml") from None
    except BoundsError as exc:
        raise ConfigError(f"{path} cannot be read as a config: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if raw is None:
        raise ConfigError(f"the config {path} is empty: copy one from configs/ (configs/cpu.yaml on a CPU) and edit "
                          "it, or pass --config configs/cpu.yaml")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of sections (data, cnn, ...), not {type(raw).__name__}")
    origins = {k: (origins or {}).get(k, f"override {k}={v!r}") for k, v in (overrides or {}).items()}
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{origins[dotted]}: '{key}' is a value, not a section, in {path}")
            node = child
        node[leaf] = value
    return parse_config(raw, f"{path} with {', '.join(origins.values())}" if origins else str(path), origins)


# --- the reference page (docs/configuration.md) -------------------------------------------------


def reference_markdown() -> str:
    """docs/configuration.md: every key with its default and description, from this schema."""
    out = ["# Configuration reference", "",
           "Generated from the schema in `fercore/config.py` by `python scripts/config_reference.py` (a test fails "
           "when this page is out of date). Configs are YAML files (`configs/`); `run.py --set KEY=VALUE` overrides "
           "one key. Unknown keys and bad values fail at load time, naming the key. A config holds plain values: anchors "
           "and aliases (`&name`, `*name`), nesting deeper than 32 levels and files over 1 MB are refused, naming the "
           "file and line (`fercore/safe_yaml.py`).", ""]
    for name, field in Config.model_fields.items():
        section = _model_of(field.annotation)
        about = field.description or (section.__doc__ or "").strip().splitlines()[0] if section or field.description else ""
        out += [f"## `{name}`", "", about.replace("``", "`").replace(":mod:", ""), ""]
        if name == "contenders":
            out += ["Each entry is `contenders.NAME` (letters, digits, `_`, `-`: it names the steps `train_NAME`, "
                    "`evaluate_NAME`, `register_NAME` and the versions' `contender` tag) with a `family`, and that "
                    "family's keys below. Adding a contender is a config entry.", ""]
            for family in (CnnContender, VitContender):
                out += [f"### `family: {family.model_fields['family'].description}`", "", *_table(family, "contenders.NAME."), ""]
        elif section is not None:
            out += [*_table(section, f"{name}."), ""]
        else:
            out += [f"Default: {_default(field)}", ""]
    return "\n".join(out).rstrip() + "\n"


def _model_of(annotation: Any) -> type[BaseModel] | None:
    candidates = [annotation, *getattr(annotation, "__args__", ())]
    return next((a for a in candidates if isinstance(a, type) and issubclass(a, BaseModel)), None)


def _describe_field(field: Any) -> str:
    text = field.description or ""
    choices = getattr(field.annotation, "__args__", ()) if getattr(field.annotation, "__origin__", None) is Literal else ()
    return text + (f" (one of {', '.join(map(str, choices))})" if choices and len(choices) > 1 else "")


def _default(field: Any) -> str:
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return ""
    return "`" + yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("\n...") + "`"


def _table(model: type[BaseModel], prefix: str) -> list[str]:
    rows = ["| key | default | meaning |", "| --- | --- | --- |"]
    for name, field in model.model_fields.items():
        nested = _model_of(field.annotation)
        if nested is not None and name != "family":
            rows += _table(nested, f"{prefix}{name}.")[2:]
        elif name != "family":
            rows.append(f"| `{prefix}{name}` | {_default(field)} | {_describe_field(field).replace('|', '/')} |")
    return rows
