"""The study's tuning: the protocol's learning-rate and length rules applied to the baseline's runs.

The tuning runs are PSPNet baselines of the ``study`` profile with the protocol's tuning seeds,
each with a learning curve on the tuning split (``monitor_log.jsonl``: mIoU every
``monitor_every`` steps).  They live beside the study's runs, in folders of their own
(``pspnet-baseline-s<seed>-c<hash>``: their overrides are the candidate rate and length).

* learning rate: among the runs of the protocol's ``at_steps`` length (default: the longest
  candidate length), the candidate with the highest mean final tuning mIoU over the tuning seeds
  (ties: the smaller rate);
* length: at that rate, the shortest candidate length ``S`` whose run gains less than
  ``max_gain_pp`` points of tuning mIoU over its last ``last_fraction`` of steps
  (``mIoU(S) - mIoU((1 - last_fraction) S)``, mean over the tuning seeds).  When no candidate
  passes, the longest is taken and ``converged`` is False (the book says so).

:func:`tuning_table` reads the runs, :func:`apply_tuning_rules` decides.  Torch-free.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from aafcore.runs import read_json

__all__ = ["TuningDecision", "tuning_table", "apply_tuning_rules"]


@dataclass(frozen=True)
class TuningDecision:
    """What the rules chose: ``lr``, ``steps``, whether the length passed the rule (``converged``)."""

    lr: float
    steps: int
    converged: bool


def _curve_value(curve: list[dict], step: int, path: Path) -> float:
    for record in curve:
        if record["step"] == step:
            return 100 * record["miou"]
    raise ValueError(f"{path}: no learning-curve point at step {step} (monitor_every must divide it)")


def _json_line(line: str, path: Path) -> dict:
    try:
        return json.loads(line)
    except ValueError as err:
        raise ValueError(f"{path}: a line is not JSON ({err})") from None


def tuning_table(results_root: str | Path, profile: str, tuning_seeds, last_fraction: float) -> pd.DataFrame:
    """One row per finished tuning run under ``<results_root>/<profile>/synthetic``: ``seed``, ``lr``,
    ``steps``, tuning mIoU (points) at the end (``miou_end``) and at ``(1 - last_fraction) steps``
    (``miou_before``), their difference ``gain_pp``, the run's folder and its minutes of training."""
    rows = []
    root = Path(results_root) / profile / "synthetic"
    for seed in tuning_seeds:
        for run in sorted(root.glob(f"pspnet-baseline-s{seed}-c*")):
            metrics_path, curve_path = run / "metrics.json", run / "monitor_log.jsonl"
            if not (metrics_path.is_file() and curve_path.is_file()):
                continue
            cfg = read_json(metrics_path)["config"]
            curve = [_json_line(line, curve_path) for line in curve_path.read_text().splitlines() if line.strip()]
            steps = int(cfg["steps"])
            before = round((1 - last_fraction) * steps)
            end, earlier = _curve_value(curve, steps, curve_path), _curve_value(curve, before, curve_path)
            train_seconds = read_json(metrics_path)["provenance"].get("train_seconds")
            rows.append({"seed": seed, "lr": float(cfg["lr"]), "steps": steps, "miou_before": earlier,
                         "miou_end": end, "gain_pp": end - earlier, "run": run.name,
                         "train_minutes": None if train_seconds is None else train_seconds / 60})
    return pd.DataFrame(rows)


def apply_tuning_rules(table: pd.DataFrame, lr_candidates, step_candidates, max_gain_pp: float,
                       lr_steps: int | None = None) -> TuningDecision:
    """The protocol's choice from :func:`tuning_table`'s rows (see the module docstring); a
    ``ValueError`` naming what is missing when a candidate's run is absent.  ``lr_steps``: the
    length at which the learning rates are compared (default: the longest candidate length)."""
    lr_steps = max(step_candidates) if lr_steps is None else int(lr_steps)
    finals = {}
    for lr in lr_candidates:
        rows = table[(table["lr"] == lr) & (table["steps"] == lr_steps)]
        if rows.empty:
            raise ValueError(f"no tuning run at lr {lr} and {lr_steps} steps: the learning-rate rule needs one")
        finals[lr] = rows["miou_end"].mean()
    best = max(finals.values())
    lr = min(c for c, v in finals.items() if v == best)
    for steps in sorted(step_candidates):
        rows = table[(table["lr"] == lr) & (table["steps"] == steps)]
        if rows.empty:
            raise ValueError(f"no tuning run at lr {lr} and {steps} steps: the length rule needs one")
        if rows["gain_pp"].mean() < max_gain_pp:
            return TuningDecision(lr, int(steps), True)
    return TuningDecision(lr, int(max(step_candidates)), False)
