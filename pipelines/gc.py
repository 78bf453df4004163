"""``run.py gc``: deletes what retention does not keep (``retention:`` in the config), or lists it with the bytes
it would free (``--dry-run``).

- MLflow: versions beyond the last ``keep_versions`` of each contender and ensemble kind (never an alias holder
  or a kept ensemble's member), their runs and model files, and other runs beyond the newest ``keep_runs``
  (:mod:`fercore.promotion.retention`), under the promotion lock, so that no promotion decides meanwhile.
- ZenML: pipeline runs beyond the newest ``keep_runs`` per pipeline, except the runs kept versions came from
  and the runs whose step results a kept run reused from the cache (deleting those would retrain on the
  next run); then ZenML's own ``prune_artifacts`` deletes the artifacts no run uses any more.
- Checkpoints left by killed training jobs, when no ``train_all`` is running, and local model copies
  (``run.py predict``'s cache) of deleted versions.
"""

from __future__ import annotations

import logging
import shutil
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from zenml.client import Client

from fercore.config import Config
from fercore.errors import BusyError, FerError
from fercore.promotion.retention import (
    RegistryPlan,
    RunRecord,
    apply_registry_plan,
    registry_plan,
    registry_records,
    runs_to_delete,
    versions_to_keep,
)
from fercore.tracking.locations import folder_bytes
from fercore.tracking.purge import pending_file, read_pending
from pipelines.run_guard import UNFINISHED, one_run_of

logger = logging.getLogger(__name__)
PIPELINE_NAMES = ("fer_train_all", "fer_ingest", "fer_monitor")
IN_PROGRESS = {s.value for s in UNFINISHED}


class GcIncomplete(FerError):
    """gc deleted what it could; the message lists the files it could not, and the next gc finishes them."""


@dataclass
class GcPlan:
    registry: RegistryPlan
    zenml_runs: list[RunRecord]
    zenml_bytes: int | None
    checkpoints: list[Path] = field(default_factory=list)
    model_copies: list[Path] = field(default_factory=list)
    left_over: int = 0  # runs and logged models an earlier gc could not remove (it goes again)

    def bytes(self) -> dict[str, int | None]:
        return {"MLflow": self.registry.bytes, "ZenML": self.zenml_bytes,
                "checkpoints": sum(folder_bytes(p) for p in self.checkpoints),
                "model copies": sum(folder_bytes(p) for p in self.model_copies)}


def gc(config: Config, dry_run: bool) -> str:
    """Plans and (unless ``dry_run``) deletes; returns the report."""
    from fercore.promotion.aliases import promotion_lock
    from fercore.tracking.store import connect

    name, uri = config.registry.model_name, config.registry.tracking_uri
    connect(uri, config.registry.experiment_name)
    with promotion_lock(uri, name), ExitStack() as stack:
        try:  # no train_all starts while gc runs; one that runs already keeps its checkpoints
            stack.enter_context(one_run_of("fer_train_all"))
            training = False
        except BusyError:
            training = True
        plan = make_plan(config, training)
        report = describe(plan, dry_run)
        if not dry_run:
            purged = apply_registry_plan(uri, name, plan.registry)
            client = Client()
            for run in plan.zenml_runs:
                client.delete_pipeline_run(run.run_id)
            client.prune_artifacts(only_versions=True, delete_from_artifact_store=True)
            for path in plan.checkpoints + plan.model_copies:
                shutil.rmtree(path, ignore_errors=True)
            if not purged.removed and plan.registry.runs:
                report += ("\nThe MLflow runs are marked deleted on the tracking server; run `mlflow gc` there to "
                           "remove their files.")
            if purged.failures:
                raise GcIncomplete(report + "\n" + "\n".join(f"could not delete {f}" for f in purged.failures)
                                   + "\nEverything else was deleted. Fix the permission (or whatever holds the files), "
                                   "then run `run.py gc` again: it finishes what was left.")
    return report


def make_plan(config: Config, training: bool = False) -> GcPlan:
    r, model, experiment = config.retention, config.registry.model_name, config.registry.experiment_name
    # the pipeline runs that kept versions need, then the versions that the kept pipeline runs need: a kept run's
    # cached training steps hand their MLflow runs to the next run's registration (one more pass adds no run)
    uri = config.registry.tracking_uri
    records = registry_records(uri, model)
    kept = versions_to_keep(records, r.keep_versions)
    needed = {v.zenml_run_id for v in records if v.version in kept} - {""}
    runs, steps = _pipeline_runs()
    doomed = runs_to_delete(runs, needed, r.keep_runs, IN_PROGRESS, per_name=True)  # name: the run's pipeline
    gone = {run.run_id for run in doomed}
    reg = registry_plan(uri, model, experiment, r.keep_versions, r.keep_runs, {run.run_id for run in runs} - gone)
    zenml_bytes = _artifact_bytes(steps, gone)
    pending = pending_file(uri)
    left_over = sum(map(len, read_pending(pending).values())) if pending else 0
    return GcPlan(reg, doomed, zenml_bytes, [] if training else _stale_checkpoints(config), _stale_copies(config, reg),
                  left_over)


def _pipeline_runs() -> tuple[list[RunRecord], dict[str, list]]:
    """Every run of this project's pipelines (``name`` = its pipeline; ``needs`` = the runs its cached steps'
    results came from), and each run's steps."""
    from zenml.utils.pagination_utils import depaginate

    client, runs, steps = Client(), [], {}
    for pipeline in PIPELINE_NAMES:
        try:
            pipeline_id = client.get_pipeline(pipeline).id
        except KeyError:
            continue
        for run in depaginate(client.list_pipeline_runs, pipeline_id=pipeline_id):
            run_steps = list(run.steps.values())
            steps[str(run.id)] = run_steps
            needs = {str(client.get_run_step(s.original_step_run_id).pipeline_run_id) for s in run_steps
                     if s.original_step_run_id}
            runs.append(RunRecord(str(run.id), pipeline, run.status.value, run.created.timestamp(),
                                  tuple(needs - {str(run.id)})))
    return runs, steps


def _artifact_bytes(steps: dict[str, list], doomed: set[str]) -> int | None:
    """The bytes of the artifacts only doomed runs use (a local artifact store; None for a remote one)."""
    used_elsewhere, theirs = set(), {}
    for run_id, run_steps in steps.items():
        for step in run_steps:
            artifacts = [a for group in (step.inputs, step.outputs) for versions in group.values()
                         for a in (versions if isinstance(versions, list) else [versions])]
            for a in artifacts:
                if run_id in doomed:
                    theirs[a.id] = a.uri
                else:
                    used_elsewhere.add(a.id)
    uris = [uri for a_id, uri in theirs.items() if a_id not in used_elsewhere]
    if any("://" in uri for uri in uris):
        return None
    return sum(folder_bytes(Path(uri)) for uri in uris)


def _stale_checkpoints(config: Config) -> list[Path]:
    """Checkpoint folders (local ones) of jobs that no ``train_all`` will resume: gc runs while none runs."""
    root = Path(config.checkpoint_dir)
    if "://" in config.checkpoint_dir or not root.is_dir() or Client().active_stack.artifact_store.flavor != "local":
        return []
    return [job for kind in root.iterdir() if kind.is_dir() for job in kind.iterdir() if job.is_dir()]


def _stale_copies(config: Config, reg: RegistryPlan) -> list[Path]:
    """``run.py predict``'s local copies of the versions this gc deletes."""
    from fercore.tracking.copies import copied_versions
    from fercore.tracking.locations import default_cache_dir

    doomed = {r.version for r in reg.versions}
    return [folder for folder, (uri, name, version) in copied_versions(default_cache_dir() / "models").items()
            if uri == config.registry.tracking_uri and name == config.registry.model_name and version in doomed]


def describe(plan: GcPlan, dry_run: bool) -> str:
    """What goes (``would go`` with ``dry_run``), and the bytes freed."""
    verb = "would be deleted" if dry_run else "deleted"
    reg = plan.registry
    lines = [f"MLflow versions {verb} ({len(reg.versions)}): "
             + (", ".join(f"v{r.version} ({r.group})" for r in sorted(reg.versions, key=lambda r: int(r.version)))
                or "none"),
             f"MLflow runs {verb} ({len(reg.runs)}): " + (", ".join(sorted({r.name for r in reg.runs})) or "none"),
             f"ZenML pipeline runs {verb} ({len(plan.zenml_runs)}), then their unused artifacts (ZenML's "
             "prune_artifacts)",
             f"checkpoints {verb}: {len(plan.checkpoints)}; local model copies {verb}: {len(plan.model_copies)}",
             *([f"left by an earlier gc that could not delete them, {verb}: {plan.left_over} runs and logged models"]
               if plan.left_over else []),
             "kept: " + "; ".join(f"v{v} ({why})" for v, why in sorted(reg.kept.items(), key=lambda kv: int(kv[0])))]
    sizes = plan.bytes()
    known = {k: v for k, v in sizes.items() if v is not None}
    lines.append(f"bytes {'to free' if dry_run else 'freed'}: {_mb(sum(known.values()))} ("
                 + ", ".join(f"{k} {_mb(v) if v is not None else 'not measured (remote store)'}"
                             for k, v in sizes.items()) + ")")
    return "\n".join(lines)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"
