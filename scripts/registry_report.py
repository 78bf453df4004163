"""Prints the registered versions of the emotion model: tags, headline and per-class metrics, aliases.

valF1 is the validation macro-F1 that promotion decides on; the test columns are the report.

Usage:
    python scripts/registry_report.py [--tracking-uri sqlite:///mlflow.db] [--model fer2013-emotion]
"""

from __future__ import annotations

import argparse
import os

from fercore.constants import CLASS_NAMES
from fercore.tracking import registry
from fercore.tracking.runs import run_metrics
from fercore.tracking.tags import family


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"))
    parser.add_argument("--model", default="fer2013-emotion")
    args = parser.parse_args()
    by_version: dict[str, list[str]] = {}
    for alias, version in registry.aliases(args.tracking_uri, args.model).items():
        by_version.setdefault(version, []).append(alias)
    versions = registry.versions(args.tracking_uri, args.model)[::-1]
    for metric, what in (("accuracy", "share of that emotion's test images classified correctly"), ("f1", "F1")):
        print(f"{'version':>7} {'family':<12} {'valF1':>6} {'acc':>6} {'macroF1':>7} {'Private':>7}  " +
              " ".join(f"{c[:7]:>7}" for c in CLASS_NAMES) + "  checkpoint / aliases")
        for v in versions:
            metrics = run_metrics(args.tracking_uri, v.run_id)
            per_class = " ".join(f"{metrics.get(f'test_{c}_{metric}', float('nan')):7.3f}" for c in CLASS_NAMES)
            print(f"{v.version:>7} {family(v):<12} {float(v.tags.get('val_macro_f1', 'nan')):6.4f} "
                  f"{float(v.tags.get('test_accuracy', 'nan')):6.4f} "
                  f"{float(v.tags.get('test_macro_f1', 'nan')):7.4f} "
                  f"{metrics.get('test_PrivateTest_accuracy', float('nan')):7.4f}  {per_class}  "
                  f"{v.tags.get('checkpoint', '')} {','.join(sorted(by_version.get(str(v.version), [])))}")
        print(f"(per-class columns: {what})\n")
    for v in versions:  # how each was trained: the contest, the weights kept, what it continued from
        t = v.tags
        print(f"v{v.version} {t.get('contender', family(v))}: kept {t.get('kept_weights', '-')}, "
              f"{t.get('total_training_minutes', '-')} training minutes and {t.get('total_epochs', '-')} epochs in all, "
              f"continued from v{t['continued_from'] if t.get('continued_from') else '- (fresh)'}; "
              f"{t.get('rungs', '')}; {t.get('contest', '')}")


if __name__ == "__main__":
    main()
