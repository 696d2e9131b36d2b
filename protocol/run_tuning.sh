#!/bin/bash
# The protocol's tuning runs (protocol/study.yaml: training.learning_rate and training.length_rule),
# on the PSPNet baseline with the tuning seed 100 and learning curves on the tuning split:
#   1. every candidate learning rate at `at_steps` (750; draft 2, runs committed);
#   2. every candidate length at the chosen rate, two runs side by side on one thread each, as the
#      study runs (aafcore.report.tuning decides).
# Run it from the repository's root of a clean checkout; finished runs are skipped, a killed one
# continues from its checkpoint.  Results: results/study/synthetic/pspnet-baseline-s100-c<hash>/.
set -euo pipefail
PY=${PYTHON:-python}
config() {   # lr steps -> a config file of the study profile with that rate and length
  "$PY" - "$1" "$2" <<'PYEOF'
import dataclasses, json, sys, tempfile
from aafcore.config import profile_config
cfg = profile_config("study", seed=100, lr=float(sys.argv[1]), steps=int(sys.argv[2]), monitor_every=50)
f = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
json.dump(dataclasses.asdict(cfg), f)
print(f.name)
PYEOF
}
rule() {   # what the protocol's rules say from the runs so far ("lr" or "table")
  "$PY" - "$1" <<'PYEOF'
import sys
from aafcore.report.protocol import load_protocol
from aafcore.report.tuning import apply_tuning_rules, tuning_table
t = load_protocol().training
rate, length = t["learning_rate"], t["length_rule"]
table = tuning_table("results", "study", t["tuning_seeds"], length["last_fraction"])
if sys.argv[1] == "lr":
    rows = table[table.steps == rate["at_steps"]].groupby("lr").miou_end.mean()
    print(min(lr for lr, v in rows.items() if v == rows.max()))
else:
    print(table.to_string())
    print(apply_tuning_rules(table, rate["candidates"], length["candidate_steps"], length["max_gain_pp"],
                             rate["at_steps"]))
PYEOF
}
for lr in 0.01 0.03 0.1; do
  echo "== lr $lr, 750 steps ($(date +%T))"
  "$PY" -m aafcore.cli train --config "$(config "$lr" 750)" --no-progress
done
chosen=$(rule lr)
echo "== chosen learning rate $chosen"
export OMP_NUM_THREADS=1
for steps in 1500 1000 1250; do
  echo "== lr $chosen, $steps steps ($(date +%T))"
  "$PY" -m aafcore.cli train --config "$(config "$chosen" "$steps")" --no-progress > "tuning-$steps.log" 2>&1 &
  if [ "$steps" = 1000 ]; then wait -n; fi   # two at a time: 1500 beside 1000, then 1500 beside 1250
done
wait
rule table
