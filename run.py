"""Command line entry point: loads a YAML config from configs/ and runs or schedules a pipeline.

Examples:
    python run.py --pipeline ingest --data ../shared/data/fer2013/fer2013.tar.gz
    python run.py predict photo.jpg photos/ --json faces.json --annotate annotated/
    python run.py --pipeline train_all --config configs/smoke.yaml
    python run.py --pipeline train_all --schedule            # cron from the config
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from fercore.errors import ConfigError, FerError

if TYPE_CHECKING:
    from fercore.config import Config

# Imports are made where they are needed: `run.py --help` and `run.py predict` never import ZenML
# (1.7 s on 2 cores), and predict never imports MLflow when the model's copy is up to date.
ROOT = Path(__file__).resolve().parent
PIPELINE_NAMES = ("ingest", "train_all", "monitor")
logger = logging.getLogger("run")


def default_config_path() -> Path:
    """``configs/train_all.yaml`` (the paper's setup) with a CUDA GPU, else ``configs/cpu.yaml``."""
    import torch

    return ROOT / "configs" / ("train_all.yaml" if torch.cuda.is_available() else "cpu.yaml")


def configure_logging(pipelines: bool = True) -> None:
    """INFO logs of this project; for pipelines ZenML installs its own console handler on the root logger
    first, so ours is not doubled."""
    if pipelines:
        import zenml  # noqa: F401
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("fercore", "run"):
        logging.getLogger(name).setLevel(logging.INFO)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run the FER-2013 emotion-recognition pipelines.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Pipelines:\n  ingest     ingest + validate + split + rebalance, prints the counts\n"
        "  train_all  ingest -> rebalance -> train -> evaluate -> register (-> promote)\n"
        "  monitor    new images (--data) scored by the champion, drift reports (-> retrain)",
    )
    parser.add_argument("--pipeline", choices=PIPELINE_NAMES, required=True, help="which pipeline to run")
    parser.add_argument("--config", type=Path, help="YAML config (default: configs/train_all.yaml with a GPU, "
                        "else configs/cpu.yaml)")
    parser.add_argument("--data", help="data source: 'kaggle' or a folder / .zip / .tar.gz / fer2013.csv path "
                        "(overrides data.source)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set contenders.vgg7.epochs=5 (repeatable; VALUE is YAML)")
    parser.add_argument("--schedule", nargs="?", const="", metavar="CRON",
                        help="schedule the pipeline instead of running it now (cron from the config if omitted)")
    parser.add_argument("--unschedule", action="store_true",
                        help="remove the pipeline's crontab entry / ZenML schedule and its scheduled config")
    parser.add_argument("--no-cache", action="store_true", help="run every step (no ZenML step cache, no decoded-data "
                        "cache)")
    parser.add_argument("--verbose", action="store_true", help="show tracebacks of data, config and service errors")
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace) -> Config:
    import yaml

    from fercore.config import load_config

    overrides, origins = {}, {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE (e.g. --set contenders.vgg7.epochs=5), got '{item}'")
        try:
            overrides[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item}: the value is not valid YAML ({exc})") from None
        origins[key.strip()] = f"--set {item}"
    if args.data:
        key = "monitor.data" if args.pipeline == "monitor" else "data.source"  # monitor: the new images
        overrides[key], origins[key] = args.data, f"--data {args.data}"
    path = args.config or default_config_path()
    logger.info("Using config %s", path)
    return load_config(path, overrides, origins)


def ensure_zenml_repository() -> None:
    """Runs ``zenml init`` in the project folder on first use (default local stack, SQLite store)."""
    from zenml.client import Client

    if not (ROOT / ".zen").exists():
        Client.initialize(root=ROOT)


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


class _QuietExpectedErrors(logging.Filter):
    """Drops the traceback of the project's own errors (bad data, config, services) from ZenML's step
    failure log: their message says what is wrong. ``--verbose`` keeps it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], FerError):
            record.exc_info, record.exc_text = None, None
        return True


def check_services(config: Config, pipeline: str, config_path: str) -> None:
    """What the run needs, checked before the first step: a stack the config is meant for, the data
    (source, incoming batches, new images to monitor), the ViT checkpoint, the MLflow store and model.

    On a stack that runs steps elsewhere the data paths are read in the pods, so they are not looked up
    here; a retrain triggered by monitoring, which writes the new faces on this machine, is refused.
    """
    from pipelines.stack_checks import check_remote_stack, check_secrets, check_stack_fits, runs_here

    check_stack_fits(config, config_path)
    local = runs_here()
    if pipeline == "monitor":
        if not config.monitor.data:
            raise ConfigError("monitor needs new images: --data PATH (a folder or archive of faces or photos)")
        if local:
            from fercore.monitoring.monitor import check_new_images

            check_new_images(config.monitor.data, config.monitor.on_unreadable)
        elif config.monitor.on_drift == "retrain":
            raise ConfigError("monitor.on_drift: retrain writes the new faces to monitor.incoming_dir on this machine, "
                              "where the step pods of this stack cannot read them: use on_drift: report and add the "
                              "batch to data.incoming at a path the pods can read")
    elif local:
        from fercore.data.ingest import check_source

        check_source(config.data.source, config.data.cache_dir, config.data.kaggle_dataset)
    if not local:
        read_in_pods = [config.monitor.data] if pipeline == "monitor" else [config.data.source, *config.data.incoming]
        for path in read_in_pods:
            if path != "kaggle":
                logger.warning("%s is read by the step pods: it must be a path inside the image or on a volume "
                               "mounted there", path)
    if config.data.incoming and local and pipeline != "monitor":
        from fercore.data.incoming import check_batches

        check_batches(config.data.incoming)
    check_secrets(config)
    if pipeline == "ingest":
        return
    if pipeline == "train_all" and local:  # on a cluster the pods load checkpoints: this machine need not reach the hub
        from fercore.models.vit import check_checkpoint

        for contender in config.enabled_contenders().values():
            if contender.family == "vit":
                check_checkpoint(contender.checkpoint)
    from fercore.serving.registry import check_tracking_store, resolve_version
    from fercore.stores import resolve_tracking_uri
    from steps.common import stack_tracking_uri

    # the resolved store becomes part of the config, so ZenML's cache keys of the steps that log to
    # MLflow change with it: a cached step never points at a run of another store
    config.registry.tracking_uri = resolve_tracking_uri(config.registry.tracking_uri, stack_tracking_uri())
    check_remote_stack(config)
    check_tracking_store(config.registry.tracking_uri, config.registry.experiment_name)
    if pipeline == "monitor":
        resolve_version(f"models:/{config.registry.model_name}@{config.monitor.model}")


def run_pipeline(args: argparse.Namespace, config: Config) -> None:
    from zenml.client import Client

    from pipelines import PIPELINES
    from pipelines.deploy import keep_kubeflow_pod_settings, pipeline_options
    from pipelines.runs import local_run_guard

    pipeline = PIPELINES[args.pipeline]
    if Client().active_stack.orchestrator.flavor == "kubeflow":
        keep_kubeflow_pod_settings()  # a ZenML 0.98 bug would drop the GPU steps' node selectors
    options = pipeline_options(config)  # the step image, environment, resources (containerized orchestrators)
    if options:
        pipeline = pipeline.with_options(**options)
    if args.no_cache:  # a full run: ZenML's step cache and the decoded-data cache are both bypassed
        pipeline = pipeline.with_options(enable_cache=False)
        config.data.use_cache = False
    if args.schedule is not None:
        from pipelines.schedule import schedule_pipeline

        print(schedule_pipeline(pipeline, config, args.schedule or config.schedule.cron, args.pipeline))
        return
    with local_run_guard(pipeline.name):
        run = pipeline(config=config)
    if args.pipeline == "ingest":
        print_counts(run)
    if args.pipeline == "monitor":
        after_monitor(run, config)


def after_monitor(run, config: Config) -> None:
    """Prints the monitoring summary; retrains when it drifted and ``monitor.on_drift`` is ``retrain``."""
    import json

    from pipelines import PIPELINES
    from pipelines.monitor import after_monitoring
    from pipelines.runs import local_run_guard

    summary = run.steps["monitor_images"].outputs["monitoring"][0].load()
    print(json.dumps(summary, indent=2))

    def train_all(retrain: Config) -> None:
        with local_run_guard(PIPELINES["train_all"].name):
            PIPELINES["train_all"](config=retrain)

    if after_monitoring(config, summary, train_all):
        print("drift detected: train_all ran with the new batch (monitor.on_drift: retrain)")


def parse_predict_args(argv: list[str]) -> argparse.Namespace:
    from fercore.serving.predict import DEFAULT_MODEL

    parser = argparse.ArgumentParser(prog="run.py predict", description="Emotions of the faces in photos: each "
                                     "face is found, cropped to 48x48 grayscale and classified by a registered model.")
    parser.add_argument("photos", nargs="+", help="photo files or folders of photos")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"registered model URI (default {DEFAULT_MODEL})")
    parser.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)")
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    parser.add_argument("--annotate", type=Path, metavar="DIR", help="write each photo with boxes and labels")
    parser.add_argument("--margin", type=float, default=0.1, help="crop margin around a detected face, per side")
    parser.add_argument("--verbose", action="store_true", help="show library warnings and this project's log")
    return parser.parse_args(argv)


def predict_main(argv: list[str]) -> int:
    """``run.py predict``: exit 0, or 2 when a photo could not be read (the others still get results)."""
    args = parse_predict_args(argv)
    if not args.verbose:  # the answer, or what went wrong: nothing else on the console
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        warnings.simplefilter("ignore")
        logging.getLogger().setLevel(logging.ERROR)
        logging.getLogger("fercore").setLevel(logging.ERROR)
    from fercore.serving.faces import photo_paths
    from fercore.serving.local_models import load_predictor
    from fercore.serving.predict import format_results, predict_photos, write_json
    from fercore.stores import resolve_tracking_uri

    try:
        paths = photo_paths(args.photos)
        if not paths:
            raise FerError(f"no photos found in {' '.join(args.photos)}")
        # the model loads (mostly importing torch) while OpenCV, which releases the GIL, finds the faces
        with ThreadPoolExecutor(1) as pool:
            loading = pool.submit(load_predictor, args.model, args.tracking_uri or resolve_tracking_uri())
            results = predict_photos(paths, lambda faces: loading.result()[0](faces), args.margin, args.annotate)
            loading.result()  # a model that does not load is reported even when no photo had a face
    except FerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_results(results))
    if args.json:
        write_json(results, args.json)
    for r in results:
        if r.error:
            print(f"error: {r.error}", file=sys.stderr)
    return 2 if any(r.error for r in results) else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["predict"]:
        configure_logging(pipelines=False)
        return predict_main(argv[1:])
    args = parse_args(argv)
    configure_logging()
    if not args.verbose:
        logging.getLogger("zenml.orchestrators.local.local_orchestrator").addFilter(_QuietExpectedErrors())
    try:
        if args.unschedule:
            from pipelines.schedule import unschedule

            ensure_zenml_repository()
            print("\n".join(f"removed {item}" for item in unschedule(args.pipeline)) or "nothing was scheduled")
            return 0
        config = build_config(args)
        ensure_zenml_repository()
        check_services(config, args.pipeline, str(args.config or default_config_path()))
        run_pipeline(args, config)
    except FerError as exc:
        if args.verbose:
            logger.exception("The run stopped")
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # ZenML reports a failed step as a RuntimeError; the step's error says why
        from pipelines import PIPELINES
        from pipelines.runs import failed_step_error

        failure = failed_step_error(PIPELINES[args.pipeline].name)
        if failure and failure[1].startswith("fercore.errors."):
            print(f"error in step {failure[0]}: {failure[2]}", file=sys.stderr)
            return 2
        print(f"error: {exc}" + (f" ({failure[1]}: {failure[2]})" if failure else ""), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
