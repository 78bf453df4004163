"""Command line entry point: loads a YAML config from configs/ and runs or schedules a pipeline.

Examples:
    python run.py --pipeline ingest --data ../shared/data/fer2013/fer2013.tar.gz
    python run.py predict photo.jpg photos/ --json faces.json --annotate annotated/
    python run.py predict photos/ --explain explained/        # each face with its class activation map
    python run.py demo                                        # a page on 127.0.0.1:7860 (pip install -e ".[demo]")
    python run.py gc --dry-run                                # what retention would delete, and the bytes
    python run.py --pipeline train_all --config configs/smoke.yaml
    python run.py --pipeline train_all --schedule            # cron from the config
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
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


class DropLocalResourceNotice(logging.Filter):
    """ZenML's local orchestrator warns once per step that it ignores the steps' resource settings (GPUs for a
    cluster); on this machine that is expected and says nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Specifying step resources is not supported")


def quiet_libraries() -> None:
    """What a run prints by default: ZenML's step lines, this project's log and one bar per training
    (:func:`fercore.quiet.quiet_libraries`, and the local orchestrator's resource notice dropped)."""
    from fercore.quiet import quiet_libraries as quiet

    quiet()
    logging.getLogger("zenml.orchestrators.local.local_orchestrator").addFilter(DropLocalResourceNotice())


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
    parser.add_argument("--verbose", action="store_true", help="show tracebacks of data, config and service errors, "
                        "library warnings and notices, and download and loading bars")
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace) -> Config:
    import yaml

    from fercore.config import load_config
    from fercore.safe_yaml import load_bounded

    overrides, origins = {}, {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE (e.g. --set contenders.vgg7.epochs=5), got '{item}'")
        try:
            overrides[key.strip()] = load_bounded(value)
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
    """Runs ``zenml init`` in the project folder on first use (default local stack, SQLite store), unless
    ``ZENML_REPOSITORY_PATH`` names a repository elsewhere: ZenML uses that one, and the project's folder is left
    as it is. The project folder is the steps' source root wherever the repository is."""
    from zenml.client import Client
    from zenml.utils import source_utils

    from pipelines.stack_checks import check_zenml_server

    check_zenml_server()
    if not os.environ.get("ZENML_REPOSITORY_PATH") and not (ROOT / ".zen").exists():
        Client.initialize(root=ROOT)
    source_utils.set_custom_source_root(str(ROOT))


class QuietExpectedErrors(logging.Filter):
    """Drops the traceback of the project's own errors (bad data, config, services) from ZenML's step
    failure log: their message says what is wrong. ``--verbose`` keeps it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], FerError):
            record.exc_info, record.exc_text = None, None
        return True


def run_pipeline(args: argparse.Namespace, config: Config) -> None:
    from zenml.client import Client

    from pipelines import PIPELINES
    from pipelines.run_guard import local_run_guard
    from pipelines.settings import keep_kubeflow_pod_settings, pipeline_options

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
        from pipelines.ingest import print_counts

        print_counts(run)
    if args.pipeline == "monitor":
        from pipelines.monitor import report_and_retrain

        report_and_retrain(run, config, PIPELINES["train_all"])
    if args.pipeline == "train_all" and config.promotion.enabled:
        from pipelines.train_all import print_summary

        print_summary(run, config)
    if args.pipeline == "train_all" and config.retention.after_run:
        from pipelines.gc import gc

        print(gc(config, dry_run=False))


def gc_main(argv: list[str]) -> int:
    """``run.py gc [--config PATH] [--set KEY=VALUE] [--dry-run]``: deletes old versions and runs (``retention:``)."""
    parser = argparse.ArgumentParser(prog="run.py gc", description="Delete registered versions, MLflow and ZenML runs, "
                                     "artifacts, checkpoints and local model copies that the config's retention: "
                                     "section does not keep.")
    parser.add_argument("--config", type=Path, help="YAML config (its registry: and retention: sections)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    parser.add_argument("--dry-run", action="store_true", help="list what would be deleted and the bytes, delete nothing")
    args = parser.parse_args(argv)
    args.pipeline, args.data = "gc", None
    configure_logging()
    try:
        config = build_config(args)
        ensure_zenml_repository()
        from fercore.tracking.store import check_server
        from pipelines.gc import gc
        from pipelines.preflight import resolve_registry

        resolve_registry(config)
        check_server(config.registry.tracking_uri)
        print(gc(config, args.dry_run))
    except FerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def check_model_main(argv: list[str]) -> int:
    """``run.py check-model MODEL_URI``: exit 0 when the registered model (and each member of an ensemble) is one of
    the project's wrappers, else 2 with the reason; ``make serve`` runs it before ``mlflow models serve`` unpickles."""
    parser = argparse.ArgumentParser(prog="run.py check-model", description="Check, without opening its pickle, that "
                                     "a registered model is one of this project's wrappers (make serve runs it first).")
    parser.add_argument("model", help="models:/NAME@ALIAS or models:/NAME/VERSION")
    parser.add_argument("--tracking-uri", help="the MLflow store (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)")
    args = parser.parse_args(argv)
    quiet_libraries()
    from fercore.tracking.loading import check_registered
    from fercore.tracking.locations import resolve_tracking_uri

    try:
        label = check_registered(args.model, args.tracking_uri or resolve_tracking_uri())
    except FerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{label} ({args.model}): one of this project's wrappers (every member too, for an ensemble)")
    return 0


def predict_main(argv: list[str]) -> int:
    """``run.py predict``: emotions of the faces in photos (:mod:`fercore.serving.predict_cli`)."""
    from fercore.serving import predict_cli

    configure_logging(pipelines=False)
    return predict_cli.main(argv)


def demo_main(argv: list[str]) -> int:
    """``run.py demo``: the page of the champion and the contenders, with their maps (Gradio: the demo extra)."""
    from fercore.serving import demo

    quiet_libraries()
    return demo.main(argv)


SUBCOMMANDS = {"predict": predict_main, "demo": demo_main, "gc": gc_main, "check-model": check_model_main}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] and argv[0] in SUBCOMMANDS:
        return SUBCOMMANDS[argv[0]](argv[1:])
    args = parse_args(argv)
    if not args.verbose:
        quiet_libraries()
    configure_logging()
    if not args.verbose:
        logging.getLogger("zenml.orchestrators.local.local_orchestrator").addFilter(QuietExpectedErrors())
    try:
        if args.unschedule:
            from pipelines.schedule import unschedule

            ensure_zenml_repository()
            print("\n".join(f"removed {item}" for item in unschedule(args.pipeline)) or "nothing was scheduled")
            return 0
        config = build_config(args)
        ensure_zenml_repository()
        from pipelines.preflight import check_services

        check_services(config, args.pipeline, str(args.config or default_config_path()))
        run_pipeline(args, config)
    except FerError as exc:
        if args.verbose:
            logger.exception("The run stopped")
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # ZenML reports a failed step as a RuntimeError; the step's error says why
        from pipelines import PIPELINES
        from pipelines.run_guard import failed_step_error

        failure = failed_step_error(PIPELINES[args.pipeline].name)
        if failure and failure[1].startswith("fercore.errors."):
            print(f"error in step {failure[0]}: {failure[2]}", file=sys.stderr)
            return 2
        print(f"error: {exc}" + (f" ({failure[1]}: {failure[2]})" if failure else ""), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
