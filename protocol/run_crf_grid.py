"""The protocol's CRF tuning (protocol/study.yaml, section `crf`): the dense CRF's grid on the tuning
split, with the tuning baseline at the chosen learning rate and length (tuning seed 100).

Run from the repository's root of a clean checkout after protocol/run_tuning.sh:
    python protocol/run_crf_grid.py [RUN_DIR]
It writes <run>/crf-grid.json and prints the chosen cell.  The run is found from the protocol's
chosen (or, while it is open, the tuning rules' choice of) learning rate and length.
"""

from __future__ import annotations

import sys
from pathlib import Path

from aafcore.crf import CRFParams
from aafcore.evaluate import crf_grid
from aafcore.report.protocol import load_protocol
from aafcore.report.tuning import apply_tuning_rules, tuning_table


def tuning_run(protocol) -> Path:
    """The tuning baseline of the chosen learning rate and length."""
    t = protocol.training
    rate, length = t["learning_rate"], t["length_rule"]
    table = tuning_table("results", "study", t["tuning_seeds"], length["last_fraction"])
    decision = apply_tuning_rules(table, rate["candidates"], length["candidate_steps"], length["max_gain_pp"],
                                  rate.get("at_steps"))
    lr, steps = rate["chosen"] or decision.lr, length["chosen_steps"] or decision.steps
    rows = table[(table.lr == lr) & (table.steps == steps)]
    if len(rows) != 1:
        raise SystemExit(f"expected one tuning run at lr {lr} and {steps} steps, found {len(rows)}")
    return Path("results/study/synthetic") / rows.run.item()


def main() -> None:
    protocol = load_protocol()
    crf = protocol.crf
    run = Path(sys.argv[1]) if len(sys.argv) > 1 else tuning_run(protocol)
    out = crf_grid(run, crf["grid"], CRFParams(**crf["scaled"]), split=crf["split"], out=run / "crf-grid.json")
    for cell in out["cells"]:
        print({k: v for k, v in cell.items()})
    print(f"{run}: no CRF {out['no_crf_miou']:.2f}; chosen {out['chosen']} ({out['chosen_miou']:.2f}) "
          f"in {out['seconds']:.0f} s")


if __name__ == "__main__":
    main()
