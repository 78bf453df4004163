"""Model cards: a version's description in the registry (what it is, what it was trained on, how it scores, how
to call it, what it cannot do, and the aliases it holds and why), and the registered model's description."""

from __future__ import annotations

from fercore.config import PromotionConfig
from fercore.constants import CLASS_NAMES, LIMITATIONS
from fercore.data.dataset import FerDataset
from fercore.data.split import test_label, validation_label
from fercore.evaluation.metrics import Evaluation
from fercore.models import count_parameters
from fercore.promotion.decision import Candidate
from fercore.promotion.trained import TrainedModel
from fercore.tracking import registry

KIND = {"cnn": "a convolutional network trained from scratch", "vit": "a Vision Transformer",
        "ensemble": "an ensemble of registered versions"}
TERMS = ("`kept_weights`: which weights were kept, those of the best epoch (`raw`), their moving average (`ema`) or "
         "the rung's start weights (`start`), by validation loss; `contest`: what the rungs decided (a contender that "
         "can no longer win stops after its first rung); `continued_from`: the version it continued training from.")


def opening(what: str, family: str, validation: Evaluation, test: Evaluation, dataset: FerDataset) -> str:
    """The card's first line, plain: what the version is, how good it is and on what."""
    return (f"**{what}**, {KIND.get(family, family)} that names the emotion of a 48x48 grayscale face (7 emotions): "
            f"{validation.overall['accuracy']:.1%} of the {len(dataset.split('val')):,} validation faces "
            f"({validation_label(dataset)}) right (macro-F1 {validation.overall['macro_f1']:.3f}: what promotion decides "
            f"on), {test.overall['accuracy']:.1%} of the test faces ({test_label(dataset)}; reported only).")


def model_card(model_name: str, trained: TrainedModel, tags: dict[str, str], dataset: FerDataset) -> str:
    """A version's description in the registry: what it is and how good (one plain sentence), what it was trained
    on, how it scores, how to call it, and what it cannot do; its design terms explained. The aliases it holds, and
    why, are added by promotion (:func:`card_with_aliases`)."""
    contender = trained.tags.get("contender", trained.family)
    design = ", ".join(f"{k} {tags[k]}" for k in ("architecture", "checkpoint", "continued_from", "distill_teacher",
                                                   "kept_weights", "total_epochs", "total_training_minutes", "contest")
                       if tags.get(k))
    first = opening(f"{contender}", trained.family, trained.validation, trained.test, dataset)
    return (f"## {contender} ({trained.family})\n\n{first}\n\n**Design**: {count_parameters(trained.model):,} "
            f"parameters; {design or 'no training record'}. {TERMS}\n\n"
            + card_body(model_name, tags, dataset, trained.validation, trained.test, trained.tta))


def ensemble_card(model_name: str, contender: str, members: list[str], spec_line: str, tags: dict[str, str],
                  dataset: FerDataset, validation: Evaluation, test: Evaluation) -> str:
    """An ensemble version's card, as complete as a contender's: its members and how it combines them, its data,
    its validation and test figures (labelled), usage and limitations."""
    first = opening(f"{contender} ensemble", "ensemble", validation, test, dataset)
    listed = ", ".join(f"v{m}" for m in members)
    return (f"## {contender} (ensemble)\n\n{first}\n\n**Members**: {listed} of `{model_name}`, loaded by version "
            f"when it loads (a member deleted from the registry is named when it fails). {spec_line} Its validation "
            "figures are out of fold: what it was fitted on is never what it is scored on.\n\n"
            + card_body(model_name, tags, dataset, validation, test, "each member's own"))


def card_body(model_name: str, tags: dict[str, str], dataset: FerDataset, validation: Evaluation, test: Evaluation,
              tta: str) -> str:
    """What every card holds after its opening: data lineage, validation and test figures, input, usage, limits."""
    lineage = (f"dataset sha256 `{tags.get('dataset_sha256', 'not recorded')}`, validation images digest "
               f"`{tags.get('val_images', 'not recorded')}`, train/val/test images {len(dataset.split('train'))} / "
               f"{len(dataset.split('val'))} / {len(dataset.split('test'))}"
               + (f", incoming batches {tags['incoming_batches']}" if tags.get("incoming_batches") else "")
               + f"; pipeline run `{tags.get('zenml_run_id') or 'not recorded'}`")
    v = validation.overall
    return f"""**Data**: FER-2013 (48x48 grayscale faces, 7 emotions); {lineage}.

**Validation** (what promotion decides on): accuracy {v['accuracy']:.4f}, macro-F1 {v['macro_f1']:.4f}.

**Test** (reported only, never decides), per emotion:

{test.markdown()}

**Input**: uint8 faces `(N, 48, 48)`, grayscale 0-255. The version declares no input schema on purpose: MLflow's
schema enforcement would cast float pixels to uint8 silently (0.5 becomes 0); the model refuses float pixels itself,
naming the dtype. **Output**: per face a `label` and the 7 probabilities. Test-time views: {tta}.

```python
import mlflow, numpy as np
model = mlflow.pyfunc.load_model("models:/{model_name}/VERSION")  # or @champion, @champion-happy, ...
model.predict(np.zeros((2, 48, 48), np.uint8))
```

**Limitations**: {LIMITATIONS}
"""


ALIASES_HEADING = "**Aliases held**"
NO_CARD = ("No model card: this version was registered by an earlier release; its design, data and metrics are not "
           "recorded here (its MLflow run has what was logged).")


def card_with_aliases(card: str, held: dict[str, str]) -> str:
    """``card`` with its aliases section replaced: each alias the version holds now and why (its ``promoted.<alias>``
    tag: when, the winner's figure against the holder, the runner-up and the lead with its 95 % interval)."""
    base = card.split(f"\n{ALIASES_HEADING}")[0].rstrip("\n") or NO_CARD
    lines = [f"- `@{alias}`: {why}" for alias, why in sorted(held.items())] or ["none now"]
    return f"{base}\n\n{ALIASES_HEADING} (after the latest promotion):\n\n" + "\n".join(lines) + "\n"


def alias_cards(tracking_uri: str, name: str, holders: dict[str, str | None], touched: set[str]) -> dict[str, str]:
    """The cards of the ``touched`` versions (those that gained or lost an alias) with their aliases section
    rewritten (read only: promotion's apply writes them under its journal)."""
    cards = {}
    for version in sorted((v for v in touched if v), key=int):
        mv = registry.get_version(tracking_uri, name, version)
        held = {a: mv.tags.get(f"promoted.{a}", "(reason not recorded)") for a, v in holders.items() if v == version}
        cards[version] = card_with_aliases(mv.description or "", held)
    return cards


def model_description(name: str, holders: dict[str, str], cands: list[Candidate], config: PromotionConfig) -> str:
    """The registered model's description: the alias scheme, who holds each alias now, how to load and call it."""
    labels = {c.version: c.label for c in cands}
    now = ", ".join(f"@{alias} {labels.get(v, f'v{v}')}" for alias, v in sorted(holders.items()) if v) or "none yet"
    significance = ("a lead inside its bootstrap 95 % interval moves no alias" if config.require_significance else
                    "any lead moves an alias")
    return f"""FER-2013 facial-emotion classifiers: 48x48 grayscale faces, 7 classes ({', '.join(CLASS_NAMES)}), trained,
judged and promoted by the fer-mlops pipelines.

**Aliases**, decided on the validation split ({significance}; the test split is reported only):
- `champion`: the best version overall by {config.metric}, a single model or an ensemble of at most
  {config.max_members} members; it replaces the holder only on a lead beyond the noise; `previous-champion`: the one
  it replaced.
- `challenger`: the runner-up to the champion.
- `champion-<emotion>` (one per emotion): the best version for that emotion by its F1; the routed ensemble sends each
  emotion to this holder.

**Now** (after the latest promotion): {now}.

**Load and call a version** (MLflow, pandas and numpy; the project need not be installed):

```python
import mlflow, numpy as np
model = mlflow.pyfunc.load_model("models:/{name}@champion")
model.predict(np.zeros((2, 48, 48), np.uint8))  # per face: label and the 7 probabilities
```

Input: uint8 faces `(N, 48, 48)`, grayscale 0-255, cropped like FER-2013 (`run.py predict` finds and crops the faces of
ordinary photos).

**Limitations**: {LIMITATIONS}
"""
