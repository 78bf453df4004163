#!/usr/bin/env bash
# Nights of retraining, as a user's schedule runs them: `make train`, then N-1 runs of the config that
# `run.py --pipeline train_all --schedule` writes (continue_from: latest). Run it from a fresh clone; each night's
# console goes to nightK.log, its /usr/bin/time -v figures to nightK.rss, exit codes and seconds to nights.txt.
# The scheduled config is written with fercore.crontab.write_scheduled_config, the function --schedule calls, so a
# machine without crontab runs it too.
#
# Usage: scripts/benchmark_nights.sh ARCHIVE [NIGHTS]   (docs/BENCHMARKS.md, "Three nights with the spare seed")
set -u
DATA=$(realpath "${1:?path of the FER-2013 archive}")
NIGHTS=${2:-3}
cd "$(dirname "$0")/.."
lscpu | grep -i flags > lscpu_flags.txt
s=$(date +%s); /usr/bin/time -v -o night1.rss make train DATA="$DATA" > night1.log 2>&1
echo "night1 rc=$? secs=$(( $(date +%s)-s ))" >> nights.txt
.venv/bin/python -c "
import sys
from fercore.config import load_config
from fercore.crontab import write_scheduled_config
print(write_scheduled_config(load_config('configs/cpu.yaml', {'data.source': sys.argv[1]}), 'train_all', '0 3 * * *'))
" "$DATA" >> nights.txt
for n in $(seq 2 "$NIGHTS"); do
  s=$(date +%s)
  /usr/bin/time -v -o "night$n.rss" .venv/bin/python run.py --pipeline train_all --config schedules/train_all.yaml \
    > "night$n.log" 2>&1
  echo "night$n rc=$? secs=$(( $(date +%s)-s ))" >> nights.txt
done
