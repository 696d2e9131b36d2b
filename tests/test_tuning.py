"""The protocol's tuning rules (aafcore.report.tuning) on hand-made learning curves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aafcore.report.tuning import TuningDecision, apply_tuning_rules, tuning_table


def _run(root: Path, lr: float, steps: int, curve: dict[int, float], seed: int = 100) -> None:
    run = root / "study" / "synthetic" / f"pspnet-baseline-s{seed}-c{abs(hash((lr, steps))) % 10**8:08d}"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"config": {"lr": lr, "steps": steps},
                                                  "provenance": {"train_seconds": 300.0}}))
    (run / "monitor_log.jsonl").write_text("".join(json.dumps({"step": s, "miou": m}) + "\n" for s, m in curve.items()))


def test_the_rules_choose_the_best_rate_then_the_shortest_converged_length(tmp_path):
    _run(tmp_path, 0.01, 750, {600: 0.40, 750: 0.41})
    _run(tmp_path, 0.03, 750, {600: 0.500, 750: 0.502})
    _run(tmp_path, 0.1, 750, {600: 0.45, 750: 0.46})
    _run(tmp_path, 0.03, 500, {400: 0.46, 500: 0.48})       # gains 2 points in its last 20%: too short
    _run(tmp_path, 0.03, 625, {500: 0.490, 625: 0.492})     # 0.2 < 0.3: long enough
    table = tuning_table(tmp_path, "study", [100], 0.2)
    assert len(table) == 5 and table["gain_pp"].round(3).tolist().count(2.0) == 1
    assert table.loc[table["steps"] == 625, "miou_end"].item() == pytest.approx(49.2)
    decision = apply_tuning_rules(table, [0.01, 0.03, 0.1], [500, 625, 750], 0.3)
    assert decision == TuningDecision(0.03, 625, True)


def test_no_converged_length_takes_the_longest_and_says_so(tmp_path):
    for lr in (0.01, 0.03):
        _run(tmp_path, lr, 750, {600: 0.40, 750: 0.45})
    _run(tmp_path, 0.01, 500, {400: 0.30, 500: 0.35})
    table = tuning_table(tmp_path, "study", [100], 0.2)
    assert apply_tuning_rules(table, [0.01, 0.03], [500, 750], 0.3) == TuningDecision(0.01, 750, False)  # tie: smaller


def test_a_missing_candidate_or_curve_point_is_named(tmp_path):
    _run(tmp_path, 0.03, 750, {600: 0.5, 750: 0.5})
    table = tuning_table(tmp_path, "study", [100], 0.2)
    with pytest.raises(ValueError, match="no tuning run at lr 0.1 and 750 steps"):
        apply_tuning_rules(table, [0.03, 0.1], [750], 0.3)
    _run(tmp_path, 0.01, 625, {625: 0.5})
    with pytest.raises(ValueError, match="no learning-curve point at step 500"):
        tuning_table(tmp_path, "study", [100], 0.2)


def test_the_rates_can_be_compared_at_a_length_of_their_own(tmp_path):
    """Protocol draft 3: the rates were compared at 750 steps (at_steps), the lengths are longer."""
    _run(tmp_path, 0.01, 750, {600: 0.36, 750: 0.37})
    _run(tmp_path, 0.03, 750, {600: 0.39, 750: 0.41})
    _run(tmp_path, 0.03, 1000, {800: 0.440, 1000: 0.445})
    _run(tmp_path, 0.03, 1250, {1000: 0.460, 1250: 0.462})
    table = tuning_table(tmp_path, "study", [100], 0.2)
    assert apply_tuning_rules(table, [0.01, 0.03], [1000, 1250], 0.3, lr_steps=750) == TuningDecision(0.03, 1250, True)
    with pytest.raises(ValueError, match="no tuning run at lr 0.01 and 1250 steps"):
        apply_tuning_rules(table, [0.01, 0.03], [1000, 1250], 0.3)
