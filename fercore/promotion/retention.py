"""Retention: which registered versions, MLflow runs and pipeline runs to keep, and why (``run.py gc``).

The decisions (:func:`versions_to_keep`, :func:`runs_to_delete`) are pure functions of the records below;
:func:`registry_plan` reads MLflow into them, and ``pipelines/gc.py`` ZenML.
Kept, whatever their age: what an alias points to, the members of a kept ensemble, the run a kept version
was trained in, a run still in progress, and the pipeline runs a kept one needs (the run whose training
data monitoring reads for the champion, and the runs whose step results later runs reused from the cache).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fercore.promotion.ensembles import member_versions


@dataclass(frozen=True)
class VersionRecord:
    """A registered version as retention sees it.

    Attributes:
        version: its number.
        group: what "the last N" counts within: the contender's name, or the ensemble's kind (routed, averaged).
        run_id: the MLflow run it was logged from.
        aliases: the aliases it holds.
        members: an ensemble's member versions.
        zenml_run_id: the pipeline run that registered it.
        model_id: the logged model (MLflow 3) it was registered from.
    """

    version: str
    group: str
    run_id: str = ""
    aliases: tuple[str, ...] = ()
    members: tuple[str, ...] = ()
    zenml_run_id: str = ""
    model_id: str = ""


def versions_to_keep(records: list[VersionRecord], keep_last: int, kept_runs: set[str] = frozenset()) -> dict[str, str]:
    """``version -> why it is kept``: the newest ``keep_last`` of each group, every alias holder, every version
    registered by a kept pipeline run (``kept_runs``: a later run reuses its training steps from ZenML's cache, and
    registers from their MLflow runs), and the members of every kept ensemble."""
    why: dict[str, str] = {}
    for r in records:
        if r.aliases:
            why[r.version] = "holds @" + ", @".join(sorted(r.aliases))
        elif r.zenml_run_id and r.zenml_run_id in kept_runs:
            why[r.version] = "registered by a kept pipeline run (its steps are ZenML's cache)"
    groups: dict[str, list[VersionRecord]] = {}
    for r in records:
        groups.setdefault(r.group, []).append(r)
    for group, members in groups.items():
        for r in sorted(members, key=lambda r: int(r.version), reverse=True)[:keep_last]:
            why.setdefault(r.version, f"one of the last {keep_last} of {group}")
    by_version = {r.version: r for r in records}
    todo = list(why)
    while todo:  # an ensemble needs its members; a member may itself be an ensemble
        ensemble = by_version.get(todo.pop())
        for m in ensemble.members if ensemble else ():
            if m not in why:
                why[m] = f"member of kept ensemble v{ensemble.version}"
                todo.append(m)
    return why


@dataclass(frozen=True)
class RunRecord:
    """An MLflow run (or a pipeline run) as retention sees it."""

    run_id: str
    name: str
    status: str  # RUNNING / FINISHED / FAILED / KILLED (pipeline runs: running, completed, failed, ...)
    start_time: float
    needs: tuple[str, ...] = field(default=())  # pipeline runs whose step results this one reused (cache)


def runs_to_delete(runs: list[RunRecord], needed: set[str], keep_last: int, in_progress: set[str],
                   per_name: bool = False) -> list[RunRecord]:
    """The runs to delete: all but the ``needed`` ones, the newest ``keep_last`` others (of each ``name`` with
    ``per_name``: a pipeline's), those in progress, and (transitively, across names) the runs a kept run reused
    cached step results from (a ``train_all`` may reuse an ``ingest`` run's step)."""
    groups: dict[str, list[RunRecord]] = {}
    for r in runs:
        if r.run_id not in needed:
            groups.setdefault(r.name if per_name else "", []).append(r)
    kept = set(needed) | {r.run_id for r in runs if r.status in in_progress}
    for group in groups.values():
        kept |= {r.run_id for r in sorted(group, key=lambda r: r.start_time, reverse=True)[:keep_last]}
    kept = _closure(kept, {r.run_id: r for r in runs})
    return [r for r in runs if r.run_id not in kept]


def _closure(kept: set[str], by_id: dict[str, RunRecord]) -> set[str]:
    out, todo = set(kept), list(kept)
    while todo:
        run = by_id.get(todo.pop())
        for parent in run.needs if run else ():
            if parent not in out:
                out.add(parent)
                todo.append(parent)
    return out


# -- the registry and its runs ----------------------------------------------------------------------


@dataclass
class RegistryPlan:
    """What ``gc`` keeps and deletes in MLflow."""

    kept: dict[str, str]  # version -> why
    versions: list[VersionRecord]  # to delete
    model_ids: dict[str, str]  # version -> its logged model
    runs: list[RunRecord]  # to delete (the runs of deleted versions among them)
    bytes: int | None  # their files on a local artifact store (None: a server's, not measured)


def registry_records(tracking_uri: str, name: str) -> list[VersionRecord]:
    """``name``'s versions as retention sees them (their aliases, members, runs)."""
    from fercore.tracking import registry
    from fercore.tracking.tags import family

    held: dict[str, list[str]] = {}
    for alias, version in registry.aliases(tracking_uri, name).items():
        held.setdefault(version, []).append(alias)
    return [_record(v, held.get(str(v.version), []), family(v), registry.logged_model_id(v) or "")
            for v in registry.versions(tracking_uri, name)]


def registry_plan(tracking_uri: str, name: str, experiment: str, keep_versions: int, keep_runs: int,
                  kept_pipeline_runs: set[str] = frozenset()) -> RegistryPlan:
    """Reads ``name``'s versions and ``experiment``'s runs and decides what goes (the versions registered by
    ``kept_pipeline_runs`` stay: see :func:`versions_to_keep`)."""
    from fercore.tracking.registry import runs_of_other_models
    from fercore.tracking.runs import experiment_runs, local_artifact_bytes

    records = registry_records(tracking_uri, name)
    kept = versions_to_keep(records, keep_versions, kept_pipeline_runs)
    doomed = [r for r in records if r.version not in kept]
    needed = {r.run_id for r in records if r.version in kept} | runs_of_other_models(tracking_uri, name)  # a shared experiment
    runs = [RunRecord(r.run_id, r.name, r.status, r.start_time) for r in experiment_runs(tracking_uri, experiment)]
    runs_out = runs_to_delete(runs, needed, keep_runs, {"RUNNING"})
    model_ids = {r.version: r.model_id for r in doomed if r.model_id}
    sizes = [local_artifact_bytes(tracking_uri, run_id=r.run_id) for r in runs_out]
    sizes += [local_artifact_bytes(tracking_uri, model_id=m) for m in model_ids.values()]
    return RegistryPlan(kept, doomed, model_ids, runs_out, None if None in sizes else sum(sizes))


def _record(version, aliases: list[str], kind: str, model_id: str) -> VersionRecord:
    tags = version.tags
    members = tuple(member_versions(tags))
    group = tags.get("contender") or kind
    return VersionRecord(str(version.version), group, version.run_id or "", tuple(aliases), members,
                         tags.get("zenml_run_id", ""), model_id)


def apply_registry_plan(tracking_uri: str, name: str, plan: RegistryPlan):
    """Deletes the plan's versions, then their runs and logged models with their files, and those an earlier gc left
    (:func:`fercore.tracking.purge.purge`); returns its :class:`~fercore.tracking.purge.PurgeResult`."""
    from fercore.tracking import registry
    from fercore.tracking.purge import purge

    for record in plan.versions:
        registry.delete_version(tracking_uri, name, record.version)
    return purge(tracking_uri, [r.run_id for r in plan.runs], list(plan.model_ids.values()))
