#!/bin/bash
# The protocol's tuning runs (protocol/study.yaml: training.learning_rate and training.length_rule),
# on the PSPNet baseline with the tuning seed 100 and learning curves on the tuning split:
#   1. every candidate learning rate at the longest candidate length (750 steps);
#   2. the other candidate lengths (500, 625) at the chosen rate (aafcore.report.tuning decides).
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
for lr in 0.01 0.03 0.1; do
  echo "== lr $lr, 750 steps ($(date +%T))"
  "$PY" -m aafcore.cli train --config "$(config "$lr" 750)" --no-progress
done
chosen=$("$PY" -c "
from aafcore.report.tuning import tuning_table
t = tuning_table('results', 'study', [100], 0.2)
t = t[t.steps == 750].groupby('lr').miou_end.mean()
print(min(lr for lr, v in t.items() if v == t.max()))")
echo "== chosen learning rate $chosen"
for steps in 500 625; do
  echo "== lr $chosen, $steps steps ($(date +%T))"
  "$PY" -m aafcore.cli train --config "$(config "$chosen" "$steps")" --no-progress
done
"$PY" -c "
from aafcore.report.tuning import apply_tuning_rules, tuning_table
t = tuning_table('results', 'study', [100], 0.2)
print(t.to_string())
print(apply_tuning_rules(t, [0.01, 0.03, 0.1], [500, 625, 750], 0.3))"
