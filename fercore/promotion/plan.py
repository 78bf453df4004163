"""Promotion's plan: from scored candidates and the current alias holders, the ensembles and one decision.

A pure function of its inputs: nothing is read from or written to the registry here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

from fercore.config import PromotionConfig
from fercore.data.dataset import FerDataset
from fercore.evaluation.significance import Bootstrap
from fercore.promotion.decision import NO_HOLDER, Candidate, Decision, category_alias, decide, routes_of
from fercore.promotion.ensembles import EnsembleCandidate, SelectionLimits, averaged_ensemble, routed_ensemble

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    """What promotion will do: a value, never changed once made (:meth:`resolve` makes a new one).

    Attributes:
        cands: every candidate, the ensembles included (one per version).
        decision: the alias moves, their reasons and the per-emotion table.
        ensembles: the ensembles weighed; those with a placeholder version are registered by ``apply``.
        blocked: drift blocks it: nothing is registered and no alias moves.
    """

    cands: list[Candidate]
    decision: Decision
    ensembles: list[EnsembleCandidate] = field(default_factory=list)
    blocked: bool = False

    def resolve(self, placeholder: str, version: str) -> Plan:
        """This plan with the registered ``version`` of an ensemble where its placeholder stood."""
        def named(text: str) -> str:
            return text.replace(f"v{placeholder}", f"v{version}")

        def swap(v: str) -> str:
            return version if v == placeholder else v

        decision = replace(self.decision, moves=[replace(m, version=swap(m.version), reason=named(m.reason))
                                                 for m in self.decision.moves],
                           reasons={k: named(r) for k, r in self.decision.reasons.items()},
                           routes=dict(self.decision.routes))
        ensembles = [replace(e, candidate=replace(e.candidate, version=swap(e.candidate.version)))
                     for e in self.ensembles]
        return replace(self, cands=[replace(c, version=swap(c.version)) for c in self.cands], decision=decision,
                       ensembles=ensembles)


def make_plan(name: str, new: list[Candidate], holders_scored: list[Candidate], holders: dict[str, str | None],
              dataset: FerDataset, config: PromotionConfig, registered_ensembles: dict[tuple[str, str], str],
              blocked: bool = False, library: list[Candidate] | None = None) -> Plan:
    """The ensembles of this run's candidates, then one decision over everyone.

    Args:
        name: the registered model (an ensemble's spec names it).
        new: this run's registered contenders, scored.
        holders_scored: alias holders of earlier runs, scored on this run's splits.
        holders: alias -> version now.
        dataset: the split dataset (validation decides).
        config: the ``promotion`` section.
        registered_ensembles: ``(routes|weights tag, value) -> version`` of the READY ensembles: an identical
            one is reused, not registered again.
        blocked: drift blocks this promotion: no ensemble is built (the decision is still reported).
        library: earlier runs' single models scored from their records (:mod:`fercore.promotion.library`): the
            averaging ensemble may choose them as members; they are not candidates for an alias themselves.
    """
    cands = new + holders_scored
    bootstrap = Bootstrap(dataset.split("val").labels, config.bootstrap_resamples) \
        if config.require_significance else None
    notes: dict[str, str] = {}
    ensembles = [] if blocked else _ensembles(name, new + holders_scored + list(library or []), cands, holders,
                                              dataset, config, registered_ensembles, bootstrap, notes)
    # an ensemble reused from the registry may be a holder: its out-of-fold figures replace its in-sample ones
    cands = list({c.version: c for c in cands + [e.candidate for e in ensembles]}.values())
    decision = decide(cands, holders, config.metric, config.min_margin, bootstrap=bootstrap,
                      max_members=config.max_members, max_predict_ms=config.max_predict_ms)
    routed = next((e.candidate.version for e in ensembles if e.candidate.contender == "routed"), None)
    for move in decision.moves:  # this run's routed ensemble moves only while its members hold their routes
        move.routes = decision.routes if move.version == routed else None
        if move.previous is None and holders.get(move.alias):  # a holder that could not be scored is replaced
            move.previous = holders[move.alias]
            move.reason += f" (holder v{holders[move.alias]} could not be scored)"
    _name_unscored_holders(decision, holders)
    if "ensemble" in notes:
        decision.reasons.setdefault("ensemble", notes["ensemble"])
    return Plan(cands, decision, ensembles, blocked)


def _name_unscored_holders(decision: Decision, holders: dict[str, str | None]) -> None:
    """An alias whose holder was skipped (files gone, not a wrapper) is "replace", not "assign (no holder yet)"."""
    for alias, reason in decision.reasons.items():
        if reason.startswith(NO_HOLDER) and holders.get(alias):
            decision.reasons[alias] = reason.replace(NO_HOLDER, f"replace (holder v{holders[alias]} could not be "
                                                                "scored)", 1)
    if "decision" in decision.table:
        for i, emotion in decision.table["emotion"].items():
            if decision.table.at[i, "decision"] == NO_HOLDER and holders.get(category_alias(emotion)):
                decision.table.at[i, "decision"] = "replace (holder could not be scored)"


def _ensembles(name: str, pool: list[Candidate], cands: list[Candidate], holders: dict[str, str | None],
               dataset: FerDataset, config: PromotionConfig, registered: dict[tuple[str, str], str],
               bootstrap: Bootstrap | None, notes: dict[str, str]) -> list[EnsembleCandidate]:
    """The routed ensemble of the emotions' winners (when they are more than one model) and the averaging ensemble
    that greedy selection picks from the library (``pool``'s single models: this run's, the holders', earlier
    runs'), each within the members and predict time the config allows. A budget no two models meet is said once,
    in ``notes["ensemble"]``: single models only."""
    library = sorted({c.version: c for c in pool if c.family != "ensemble"}.values(), key=lambda c: int(c.version))
    limits, unmeasured = _limits(library, config)
    if unmeasured:
        logger.info("Library: %s left out: no predict time recorded (promotion.max_predict_ms needs one)",
                    ", ".join(c.label for c in unmeasured))
        library = [c for c in library if c not in unmeasured]
    cheapest = sorted(limits.predict_ms.values())[:2]
    if config.max_predict_ms is not None and len(cheapest) == 2 and sum(cheapest) > config.max_predict_ms:
        notes["ensemble"] = (f"promotion.max_predict_ms is {config.max_predict_ms:g} ms and the two fastest models "
                             f"take {sum(cheapest):.0f} ms per face together: single models only")
        logger.info("%s", notes["ensemble"])
        return []
    out = []
    routes = routes_of(cands, holders, bootstrap)
    routed_cost = limits.cost(set(routes.values()))
    if config.ensemble and len(set(routes.values())) > 1:
        if config.max_predict_ms is None or routed_cost <= config.max_predict_ms:
            routed = routed_ensemble(name, routes, cands, dataset, registered)
            cost = limits.measured_cost(set(routes.values()))
            out.append(replace(routed, candidate=replace(routed.candidate, predict_ms=cost)))
        else:
            logger.info("The routed ensemble of %s would take %.0f ms per face, above promotion.max_predict_ms %g: "
                        "not built", ", ".join(f"v{v}" for v in sorted(set(routes.values()), key=int)), routed_cost,
                        config.max_predict_ms)
    averaged = averaged_ensemble(name, library, dataset, registered, limits) \
        if config.averaging and len(library) > 1 else None
    return out + ([averaged] if averaged else [])


def _limits(library: list[Candidate], config: PromotionConfig) -> tuple[SelectionLimits, list[Candidate]]:
    """The selection's limits, and the models that cannot be weighed against a predict-time budget (none measured)."""
    unmeasured = [c for c in library if c.predict_ms is None] if config.max_predict_ms is not None else []
    measured = {c.version: c.predict_ms for c in library if c.predict_ms is not None}
    return SelectionLimits(config.max_members, config.max_predict_ms, measured), unmeasured
