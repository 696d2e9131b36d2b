"""The words of the results pages (aafcore.report.findings) and the compact, colour-coded ledgers
(aafcore.report.claims, aafcore.report.ledger): on small hand-made results, every number of a
text is the number of the table it summarises, missing runs are named instead of filled in, and
the ledgers show percentage points and one coloured badge per verdict."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from aafcore import report
from aafcore.report import claims, cost, findings
from aafcore.report.ledger import compact_study_ledger, study_ledger, study_ledger_html
from aafcore.report.protocol import load_protocol
from test_ledger import _frame
from test_report import NAMES, _write, results  # noqa: F401  (results: the fixture of 3-seed runs)

INFO = {"names": NAMES, "groups": {"large": ["sky", "ground"], "thin": ["pole", "wire"]}, "widths": {},
        "benchmark": "v1", "image_size": 128, "steps": 2000}


def _load(root) -> pd.DataFrame:
    return report.load_results("cpu", "synthetic", root)


def _row(table: pd.DataFrame, method: str) -> pd.Series:
    return table.set_index("method").loc[method]


# --------------------------------------------------------------------------- pixel level


def test_pixel_findings_quote_the_tables_numbers(results):
    df = _load(results)
    text = findings.pixel_findings(df, INFO)
    val = report.method_table(df, "iou", "val-source", groups=INFO["groups"], with_crf=True)
    base, aaf, gan = (_row(val, m) for m in ("PSPNet", "AAF", "GAN"))
    assert f"the baseline reaches {base['mean']:.2f} mIoU (3 seeds)" in text
    assert f"AAF {aaf['mean']:.2f} ({aaf['mean'] - base['mean']:+.2f} points, 3 seeds)" in text
    assert f"GAN {gan['mean'] - base['mean']:+.2f} (1 seed, no spread)" in text
    assert f"{aaf['thin'] - base['thin']:+.2f} points on the thin classes" in text
    gains = report.compare_gains(df, 2).set_index(["base", "method"])
    assert f"AAF {gains.loc[('PSPNet', 'AAF'), 'paper gain']:+.2f} on VOC (Table 2)" in text
    assert f"ours {gains.loc[('PSPNet', 'AAF'), 'ours gain']:+.2f}" in text
    assert "The same synthetic runs are set against both tables" in text
    # each number of the text is one of the tables' (rounded as they show it), or the paper's
    shown = set()
    for t in (val, report.compare_gains(df, 2), report.compare_gains(df, 3)):
        for v in t.select_dtypes("number").to_numpy().ravel():
            if np.isfinite(v):
                shown |= {f"{v:.2f}", f"{v:+.2f}", f"{-v:+.2f}"}
    derived = {f"{a - b:+.2f}" for a in val["mean"] for b in val["mean"]}       # differences of two rows
    stds = {f"{v:.2f}" for v in val["± std"].dropna()}
    for number in re.findall(r"[+-]?\d+\.\d+", text):
        assert number in shown | derived | stds, number


def test_a_one_seed_method_within_the_spread_is_called_equal(results):
    df = _load(results)
    val = findings.method_summary(df, "iou", "val-source")
    text = findings.pixel_findings(df, INFO)
    d = val.at["GAN", "mean"] - val.at["AAF", "mean"]
    if abs(d) <= val.at["AAF", "std"]:
        assert "**GAN ≈ AAF**; one seed cannot tell them apart" in text
    else:
        assert "more than one seed standard deviation" in text
    assert "GAN − AAF" in text and "(1 seed against 3 seeds)" in text


def test_pixel_findings_and_limitations_with_missing_runs(tmp_path):
    _write(tmp_path, "pspnet-baseline-s0", iou=(0.9, 0.8, 0.2, 0.1))
    df = _load(tmp_path)
    text = findings.pixel_findings(df, INFO)
    assert "(1 seed); no Affinity or AAF run yet." in text and "Against the paper" not in text
    limits = findings.pixel_limitations(df, INFO)
    assert "PSPNet: PSPNet 1." in limits
    assert "**Not run (yet):** FCN, FCN Affinity" in limits and "PSPNet AAF" in limits
    assert "CRF." not in limits                                       # no CRF evaluation: nothing said of it
    _write(tmp_path, "pspnet-aaf-s0", method="aaf", iou=(0.9, 0.8, 0.3, 0.2))
    empty = _load(tmp_path)
    empty = empty[empty["method"] != "baseline"]
    assert "nothing to compare" in findings.pixel_findings(empty, INFO)


# --------------------------------------------------------------------------- instance and boundary


def test_instance_boundary_findings_in_percent(results):
    df = _load(results)
    text = findings.instance_boundary_findings(df, INFO)
    recall = report.method_table(df, "boundary_recall", "val-source", base="pspnet")
    base, aaf = _row(recall, "PSPNet"), _row(recall, "AAF")
    assert base["mean"] > 1                                           # percent, not 0-1
    assert f"**Boundary recall (%):** PSPNet {base['mean']:.2f} (3 seeds)" in text
    assert f"AAF {aaf['mean']:.2f} ({aaf['mean'] - base['mean']:+.2f} points, 3 seeds)" in text
    paper = report.compare_gains(df, 8, "boundary_recall").set_index(["base", "method"])
    assert f"{paper.loc[('PSPNet', 'AAF'), 'paper gain']:+.2f} on VOC (Table 8)" in text
    assert paper.loc[("PSPNet", "AAF"), "paper gain"] == pytest.approx(60.6 - 52.7)   # .606 - .527, in points
    inst = report.method_table(df, "instance_iou", "val-source", base="pspnet")
    assert f"**Instance-wise mIoU:** PSPNet {_row(inst, 'PSPNet')['mean']:.2f}" in text
    limits = findings.instance_boundary_limitations(df, INFO)
    assert f"{0.0075 * np.hypot(128, 128):.2f} px on our 128 px images" in limits
    assert "far below the paper's" in limits                         # 1.36 px: under a quarter of a cell


# --------------------------------------------------------------------------- cost


def test_cost_findings_quote_table_1(results):
    df = _load(results)
    text = findings.cost_findings(df, results)
    table = report.cost_table(df, results)
    crf = cost.crf_run_time(df)
    assert f"The CRF** adds {crf['crf_ms']:.1f} ms per image, ×{crf['ratio']:.1f}" in text
    assert f"AAF {table.loc['AAF', 'mIoU']:.2f} (3 seeds)" in text and f"GAN {table.loc['GAN', 'mIoU']:.2f} (1 seed)" in text
    assert f"AAF − CRF = {table.loc['AAF', 'mIoU'] - table.loc['CRF', 'mIoU']:+.2f} points" in text
    assert "Training:" not in text                                   # no step benchmark: nothing said
    assert "1 seed for GAN" in findings.cost_limitations(df, results)


def test_cost_findings_without_runs(tmp_path):
    empty = pd.DataFrame(columns=["run", "tag", "base", "method", "seed", "kernel_sizes", "weight_by", "miou",
                                  "inference_seconds_per_image", "crf_seconds_per_image"])
    assert findings.cost_findings(empty, tmp_path) == "* No run and no benchmark yet: nothing to report."


# --------------------------------------------------------------------------- the compact ledgers


def test_the_v1_compact_ledger_is_in_points_with_a_badge_per_verdict(results):
    df = _load(results)
    ledger = report.claims_ledger(df, INFO["groups"])
    compact = claims.compact_ledger(ledger).set_index("id")
    c2 = ledger.set_index("id").loc["C2"]
    lo, hi = 100 * (c2["d"] - 2 * c2["se"]), 100 * (c2["d"] + 2 * c2["se"])
    assert compact.loc["C2", "effect"] == f"{100 * c2['d']:+.2f} [{lo:+.2f}, {hi:+.2f}]"
    assert abs(100 * c2["d"]) > 1                                     # points, not a fraction
    assert compact.loc["C2", "n"] == "3/3" and compact.loc["C6", "n"] == "3/1"
    assert compact.loc["C14", "effect"].endswith(" px")
    assert compact.loc["C20", "effect"] == "–"                        # no benchmark
    assert compact.loc["C2", "source"] == "§5.1, Tab. 2-3"
    html = claims.ledger_html(compact.reset_index(), "<table>full</table>")
    counts = ledger["verdict"].value_counts()
    for verdict, n in counts.items():
        assert f"{claims.verdict_badge(verdict)} {n}" in html         # the count line at the top
    assert html.count(claims.BADGE_COLOURS["holds"][0]) == counts.get("holds", 0) + 1
    assert "<details" in html and "<table>full</table>" in html


def test_badges_effects_and_sources():
    assert claims.BADGE_COLOURS["holds"][0] != claims.BADGE_COLOURS["does not hold"][0]
    assert "#2e7d32" in claims.verdict_badge("holds") and "#c62828" in claims.verdict_badge("does not hold")
    assert "#ef6c00" in claims.verdict_badge("not reproduced") and "#757575" in claims.verdict_badge("inconclusive")
    assert "white-space:nowrap" in claims.verdict_badge("does not hold")
    assert claims.effect_text(2.5, 1.0, 4.0, "pp") == "+2.50 [+1.00, +4.00]"
    assert claims.effect_text(-1.0, np.nan, np.nan, "px") == "-1.00 px"
    assert claims.effect_text(7.987, np.nan, np.nan, "ratio") == "ratio 7.99"
    assert claims.effect_text(np.nan, 0, 1, "pp") == "–"
    assert claims.short_source("Sec. 3.3 (the adversary selects the sizes); control (a)") == "§3.3, control (a)"
    assert claims.short_source("Sec. 3.3, Eq. 7; DESIGN.md section 5; control (c)") == "§3.3, Eq. 7, control (c)"


def test_the_study_compact_ledger_keeps_the_ledgers_numbers():
    protocol = load_protocol()
    ledger = study_ledger(_frame(), protocol)
    compact = compact_study_ledger(ledger, protocol).set_index("id")
    full = ledger.set_index("id")
    c2 = full.loc["C2"]
    assert compact.loc["C2", "effect"] == f"{c2['d']:+.2f} [{c2['ci_low']:+.2f}, {c2['ci_high']:+.2f}]"
    assert compact.loc["C2", "n"] == c2["n"] == 10 and compact.loc["C2", "verdict"] == c2["verdict"]
    assert compact.loc["C14", "effect"].endswith(" px")
    assert compact.loc["C4", "effect"] == "–" and compact.loc["C4", "n"] == 0     # no FCN run
    assert list(compact.index) == list(full.index)
    html = study_ledger_html(ledger, protocol)
    assert html.startswith(f"<p><b>{len(ledger)} claims:</b>") and "<details" in html and "ci_low" in html
    assert html == study_ledger_html(ledger, protocol)               # the same page at every run (nbval)
