"""The landing page's answer: claim labels, paired effects with t-intervals, the verdict table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from aafcore.report import load_protocol, study_ledger
from aafcore.report import landing


def _runs(values: dict[str, list[float]]) -> pd.DataFrame:
    """val-source rows of PSPNet runs: method -> mIoU (fraction) per seed 0, 1, ...; every other
    metric of the ledger (per class too) equals the mIoU."""
    classes = [c for names in load_protocol().benchmark["spec"]["class_groups"].values() for c in names]
    rows = []
    for method, mious in values.items():
        sizes, weight_by = ("3,5,7", "label") if method.startswith("aaf") else ("", "")
        for seed, miou in enumerate(mious):
            rows.append({"run": f"pspnet-{method}-s{seed}", "tag": "val-source", "base": "pspnet", "method": method,
                         "seed": seed, "kernel_sizes": sizes, "weight_by": weight_by, "miou": miou,
                         "instance_miou": miou, "mean_boundary_recall": miou, "pixel_accuracy": miou,
                         **{f"{m}/{c}": miou for m in ("iou", "instance_iou", "boundary_recall") for c in classes}})
    return pd.DataFrame(rows)


def test_claim_labels_say_what_is_compared():
    labels = {c.id: landing.claim_label(c) for c in load_protocol().claims}
    assert labels["C1"] == "Affinity - PSPNet: mIoU (val)"
    assert labels["C5"] == "FCN + AAF - FCN: mIoU (val)"
    assert labels["C16"] == "AAF {3, 5} - AAF {3, 5, 7}: mIoU (val)"   # sizes shown on both sides when one differs
    assert labels["C17"] == "AAF - PSPNet: mIoU (unseen domain)"
    assert labels["C19"] == "AAF - PSPNet + CRF: mIoU (val)"
    assert labels["C8"].startswith("AAF - PSPNet: IoU gain, thin - large")


def test_effects_are_paired_means_with_t_intervals_and_the_ledgers_verdicts():
    protocol = load_protocol()
    base, aff, aaf = [0.40, 0.42, 0.41], [0.43, 0.44, 0.45], [0.44, 0.47, 0.43]
    df = _runs({"baseline": base, "affinity": aff, "aaf": aaf})
    ledger = study_ledger(df, protocol)
    effects = landing.claim_effects(df, protocol, ledger)
    d = 100 * (np.array(aaf) - np.array(base))
    ci = scipy_stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=scipy_stats.sem(d))
    row = effects.loc["C2"]
    assert row["n"] == 3 and row["d"] == pytest.approx(d.mean()) and (row["low"], row["high"]) == pytest.approx(ci)
    assert row["paper"] == pytest.approx(2.27) and row["verdict"] == ledger.set_index("id").at["C2", "verdict"]
    assert effects.loc["C4", "n"] == 0 and math.isnan(effects.loc["C4", "d"])    # no FCN run: nothing invented
    assert math.isnan(effects.loc["K1", "paper"])                                 # a control: no paper effect
    assert "C13" not in effects.index and "C20" not in effects.index             # not in percentage points of one metric
    html = landing.verdict_table(effects).to_html()
    assert f"{d.mean():+.1f} [{ci[0]:+.1f}, {ci[1]:+.1f}]" in html and "no runs yet" in html
    text = landing.answer_sentences(effects, ledger, runs_landed=9, runs_planned=80)
    assert "9 of the study's 80 trainings have landed" in text and f"{d.mean():+.2f} points" in text
    assert f"{(ledger['verdict'] == 'inconclusive').sum()} inconclusive" in text


def test_one_seed_has_no_interval_and_the_figure_draws_every_claim():
    protocol = load_protocol()
    df = _runs({"baseline": [0.40], "aaf": [0.45]})
    effects = landing.claim_effects(df, protocol, study_ledger(df, protocol))
    assert effects.loc["C2", "n"] == 1 and math.isnan(effects.loc["C2", "low"])
    assert "+5.0 (1 seed)" in landing.verdict_table(effects).to_html()
    fig = landing.plot_claim_effects(effects)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()][0].endswith("C1")
    assert len(fig.axes[0].get_yticklabels()) == len(effects)
