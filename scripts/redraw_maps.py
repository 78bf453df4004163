"""Draws a finished ``train_all`` run's maps again with this checkout's code, from that run's own artifacts (a
command, not a test): its dataset, each contender's model and predictions, and its promotion's decisions.

For when the maps' method changed after a long run: what ``evaluate_<name>`` and ``promote_models`` would show
now, and how long the maps take beside the evaluate step's duration in that run. Writes ``<name>_mean_maps.png``,
``<name>_gallery.png``, ``contest_maps.png`` and ``maps.json`` into OUT, plus ``<name>_explanation`` folders that
``docs/explain.md``'s counts were read from.

Usage: python scripts/redraw_maps.py OUT [--run RUN_NAME_OR_ID] [--threads 2] [--mean-map-faces N]
       (in the folder the run was made in)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fercore.config import ExplainConfig  # noqa: E402
from fercore.explain.figures import contest_figure, gallery_png, mean_maps_png  # noqa: E402
from fercore.explain.summary import explain_model  # noqa: E402
from steps.common import contender_output  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--run", help="pipeline run name or id (default: the last fer_train_all run)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mean-map-faces", type=int, help="default: the explain config's")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from zenml.client import Client

    client = Client()
    run = client.get_pipeline_run(args.run) if args.run else client.get_pipeline("fer_train_all").last_run
    cfg = ExplainConfig()
    dataset = next(iter(run.steps["split_data"].outputs.values()))[0].load()
    summary = run.steps["promote_models"].outputs["promotion"][0].load()
    args.out.mkdir(parents=True, exist_ok=True)
    registrations, explanations, timing = [], [], {}
    for name, step in run.steps.items():
        if not name.startswith("evaluate_"):
            continue
        contender = name[len("evaluate_"):]
        model = step.inputs["model"][0].load() if isinstance(step.inputs["model"], list) else step.inputs["model"].load()
        preds = step.outputs[contender_output(contender, "predictions")][0].load()
        val_ev = step.outputs[contender_output(contender, "val_evaluation")][0].load()
        tta = step.config.parameters.get("tta", "none")  # the views the evaluation's probabilities averaged
        e = explain_model(model, contender, dataset, preds, val_ev.per_class["f1"].to_dict(), cfg.faces_per_emotion,
                          args.mean_map_faces or cfg.mean_map_faces, tta=tta)
        (args.out / f"{contender}_mean_maps.png").write_bytes(mean_maps_png(e))
        (args.out / f"{contender}_gallery.png").write_bytes(gallery_png(e))
        (args.out / f"{contender}_explanation").mkdir(exist_ok=True)
        e.save(args.out / f"{contender}_explanation")
        step_s = (step.end_time - step.start_time).total_seconds()
        drawn_then = float(step.outputs[contender_output(contender, "explanation")][0].run_metadata.get("explain_seconds", 0.0))
        without = step_s - drawn_then  # the step without the maps its run drew
        timing[contender] = {"evaluate_step_s": round(step_s, 1), "maps_in_that_run_s": drawn_then,
                             "maps_now_s": e.seconds, "share_now": round(e.seconds / (without + e.seconds), 3)}
        registrations.append(next(iter(run.steps[f"register_{contender}"].outputs.values()))[0].load())
        explanations.append(e)
        print(contender, timing[contender], flush=True)
    figure = contest_figure(registrations, explanations, summary["per_emotion"])
    (args.out / "contest_maps.png").write_bytes(figure.png)
    (args.out / "maps.json").write_text(json.dumps({"run": run.name, "timing": timing,
                                                    "per_emotion": summary["per_emotion"]}, indent=1))


if __name__ == "__main__":
    main()
