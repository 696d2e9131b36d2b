"""The study's paired statistics (aafcore.report.stats): the paired t-test against scipy and by
hand, its edge cases, Holm on textbook examples, the verdict rules at every boundary, the
every-class rule, per-seed differences from a results frame, and the ledger frame."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from aafcore import report
from aafcore.report import stats
from aafcore.report.stats import (corrected_alpha, every_class_verdict, holm, ledger_frame, paired_differences,
                                  paired_test, style_ledger, verdict)

# --------------------------------------------------------------------------- the paired t-test


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("alternative", ["greater", "two-sided"])
def test_paired_t_is_scipy_ttest_rel(seed, alternative):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 12))
    a, b = rng.normal(0.6, 0.02, n), rng.normal(0.59, 0.02, n)
    mine = paired_test(a - b, alternative)
    ref = scipy_stats.ttest_rel(a, b, alternative=alternative)
    assert mine.n == n and mine.df == n - 1 == int(ref.df)
    assert mine.t == pytest.approx(float(ref.statistic), rel=1e-10)
    assert mine.p == pytest.approx(float(ref.pvalue), rel=1e-10, abs=1e-15)


def test_the_interval_by_hand():
    # d = 1, 2, 3, 4: mean 2.5, sd sqrt(5/3), se sd/2; t_{0.975, 3} = 3.182446305284263 (tables: 3.182)
    test = paired_test([1.0, 2.0, 3.0, 4.0], "greater", alpha=0.05)
    sd = math.sqrt(5 / 3)
    assert (test.mean, test.sd, test.se, test.df) == (2.5, pytest.approx(sd), pytest.approx(sd / 2), 3)
    half = 3.182446305284263 * sd / 2
    assert (test.ci_low, test.ci_high) == (pytest.approx(2.5 - half, abs=1e-12), pytest.approx(2.5 + half, abs=1e-12))
    assert test.t == pytest.approx(2.5 / (sd / 2))
    assert test.p == pytest.approx(scipy_stats.t.sf(2.5 / (sd / 2), 3))
    assert test.level == pytest.approx(0.95)
    # the interval is two-sided whatever the alternative, and widens with a smaller alpha
    two = paired_test([1.0, 2.0, 3.0, 4.0], "two-sided", alpha=0.05)
    assert (two.ci_low, two.ci_high) == (test.ci_low, test.ci_high)
    assert two.p == pytest.approx(2 * test.p)
    narrow = paired_test([1.0, 2.0, 3.0, 4.0], alpha=0.01)
    assert narrow.ci_low < test.ci_low and narrow.ci_high > test.ci_high


def test_one_seed_gives_no_interval():
    test = paired_test([0.7])
    assert (test.n, test.mean, test.df) == (1, 0.7, 0)
    assert all(math.isnan(v) for v in (test.sd, test.se, test.t, test.p, test.ci_low, test.ci_high))
    assert verdict(test.ci_low, test.ci_high, 0.5) == "inconclusive"


def test_zero_variance_follows_scipy_and_collapses_the_interval():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ref = scipy_stats.ttest_rel([3.0, 4.0, 5.0], [1.0, 2.0, 3.0], alternative="greater")
    up = paired_test([2.0, 2.0, 2.0])
    assert (up.se, up.t, up.p) == (0.0, math.inf, 0.0) and (up.t, up.p) == (float(ref.statistic), float(ref.pvalue))
    assert (up.ci_low, up.ci_high) == (2.0, 2.0)
    down = paired_test([-1.0, -1.0], "greater")
    assert (down.t, down.p) == (-math.inf, 1.0)
    assert paired_test([-1.0, -1.0], "two-sided").p == 0.0
    zero = paired_test([0.0, 0.0, 0.0])
    assert math.isnan(zero.t) and math.isnan(zero.p) and (zero.ci_low, zero.ci_high) == (0.0, 0.0)
    assert verdict(zero.ci_low, zero.ci_high, 1.0) == "does not hold"


def test_paired_test_refuses_what_it_cannot_test():
    with pytest.raises(ValueError, match="no differences"):
        paired_test([])
    with pytest.raises(ValueError, match="NaN"):
        paired_test([1.0, float("nan")])
    with pytest.raises(ValueError, match="alternative"):
        paired_test([1.0, 2.0], "less")
    with pytest.raises(ValueError, match="alpha"):
        paired_test([1.0, 2.0], alpha=1.5)


# --------------------------------------------------------------------------- Holm


def test_holm_on_the_textbook_example():
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4 x 0.005 = 0.02, 3 x 0.01 = 0.03, 2 x 0.03 = 0.06, max(0.06, 1 x 0.04) = 0.06
    out = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.005}, alpha=0.05)
    assert list(out.index) == ["a", "b", "c", "d"]
    assert out["p_holm"].tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert out["rejected"].tolist() == [True, False, False, True]
    assert out["rank"].tolist() == [2, 4, 3, 1]
    assert out["level"].tolist() == pytest.approx([0.05 / 3, 0.05, 0.05 / 2, 0.05 / 4])


def test_holm_by_hand_monotone_capped_ties_and_missing():
    out = holm({"a": 0.001, "b": 0.01, "c": 0.02, "d": 0.04, "e": 0.5})
    assert out["p_holm"].tolist() == pytest.approx([0.005, 0.04, 0.06, 0.08, 0.5])
    assert out["rejected"].tolist() == [True, True, False, False, False]
    assert holm({"a": 0.3, "b": 0.6})["p_holm"].tolist() == pytest.approx([0.6, 0.6])        # monotone
    assert holm({"a": 0.6, "b": 0.7})["p_holm"].tolist() == [1.0, 1.0]                        # capped at 1
    assert holm({"a": 0.01, "b": 0.01})["p_holm"].tolist() == pytest.approx([0.02, 0.02])     # ties
    assert holm({"a": 0.025})["rejected"].tolist() == [True]                                  # <= alpha
    assert holm({"a": 0.05}, alpha=0.05)["rejected"].tolist() == [True]
    missing = holm({"a": 0.01, "b": float("nan"), "c": None})          # still m = 3
    assert missing.at["a", "p_holm"] == pytest.approx(0.03)
    assert math.isnan(missing.at["b", "p_holm"]) and not missing.at["b", "rejected"] and not missing.at["c", "rejected"]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm({"a": 1.2})


def _step_down(p: np.ndarray, alpha: float) -> np.ndarray:
    """Holm's definition: reject the smallest p-values while p_(i) <= alpha / (m - i + 1)."""
    order, rejected = np.argsort(p, kind="stable"), np.zeros(len(p), bool)
    for i, j in enumerate(order):
        if p[j] > alpha / (len(p) - i):
            break
        rejected[j] = True
    return rejected


@pytest.mark.parametrize("seed", range(20))
def test_holm_rejects_what_the_step_down_definition_rejects(seed):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 0.08, int(rng.integers(1, 25)))
    out = holm(dict(zip(map(str, range(len(p))), p)))
    assert out["rejected"].tolist() == _step_down(p, 0.05).tolist()
    ranked = out.sort_values("rank")["p_holm"].to_numpy()
    assert np.all(np.diff(ranked) >= 0) and np.all(ranked <= 1) and np.all(out["p_holm"] >= out["p"])


def test_the_interval_correction_is_bonferroni():
    assert corrected_alpha(0.05, 22) == pytest.approx(0.05 / 22)
    assert corrected_alpha(0.05, 22, classes=8) == pytest.approx(0.05 / 176)
    with pytest.raises(ValueError):
        corrected_alpha(0.05, 0)


# --------------------------------------------------------------------------- verdicts


@pytest.mark.parametrize("low, high, effect, expected", [
    (0.1, 3.0, 1.0, "holds"),
    (1e-9, 0.5, 2.0, "holds"),                  # 1. above 0 holds, even when below the paper's effect
    (0.0, 3.0, 1.0, "inconclusive"),            # 0 is not above 0
    (0.0, 0.5, 1.0, "not reproduced"),
    (-1.0, 0.0, 2.0, "does not hold"),          # 2. hi = 0: does not hold, checked before 3.
    (0.0, 0.0, 2.0, "does not hold"),
    (-2.0, -1.0, 1.0, "does not hold"),
    (-1.0, 1e-9, 2.0, "not reproduced"),        # 3. just above 0, below the paper's effect
    (-1.0, 1.999, 2.0, "not reproduced"),
    (-1.0, 2.0, 2.0, "inconclusive"),           # hi = the paper's effect: not below it
    (-1.0, 3.0, 2.0, "inconclusive"),
    (-1.0, 1.0, None, "inconclusive"),          # no paper effect: never "not reproduced"
    (-1.0, 1.0, float("nan"), "inconclusive"),
    (-1.0, 0.5, -0.1, "inconclusive"),          # a non-positive paper effect below the interval's end
    (float("nan"), 1.0, 2.0, "inconclusive"),   # no interval (one seed)
    (float("nan"), float("nan"), None, "inconclusive"),
])
def test_the_verdict_rules_at_every_boundary(low, high, effect, expected):
    assert verdict(low, high, effect) == expected
    assert report.ci_verdict is verdict


def test_the_verdict_refuses_a_reversed_or_infinite_interval():
    with pytest.raises(ValueError, match="above its high end"):
        verdict(2.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="finite"):
        verdict(-math.inf, 1.0, 0.0)


@pytest.mark.parametrize("classes, expected", [
    (["holds", "holds", "holds"], "holds"),
    (["holds", "holds", "inconclusive"], "inconclusive"),
    (["holds", "not reproduced", "inconclusive"], "not reproduced"),
    (["holds", "not reproduced", "does not hold"], "does not hold"),
    (["does not hold", "holds"], "does not hold"),
    (["inconclusive"], "inconclusive"),
    ([], "inconclusive"),
])
def test_every_class_holds_only_if_each_class_holds(classes, expected):
    assert every_class_verdict(classes) == expected
    assert every_class_verdict(dict(zip(map(str, range(len(classes))), classes))) == expected


def test_every_class_refuses_an_unknown_verdict():
    with pytest.raises(ValueError, match="unknown verdict"):
        every_class_verdict(["holds", "maybe"])


def test_a_class_without_a_significant_gain_stops_an_every_class_claim():
    """The review's case: every class's mean improves, one class's gain is not significant."""
    seeds = np.arange(10)
    clear = 5.0 + 0.1 * np.sin(seeds)                 # large, steady gain
    noisy = 0.5 + 3.0 * np.cos(seeds)                 # positive mean, not significant
    frame = ledger_frame({"C13": {"pole": pd.Series(clear), "wire": pd.Series(noisy)}}, {"C13": 2.1}, family_size=22)
    row = frame.loc["C13"]
    assert noisy.mean() > 0 and row["verdict"] == "inconclusive"
    assert "1 of 2 classes hold" in row["note"] and "wire" in row["note"]
    assert row["ci_level"] == pytest.approx(1 - 0.05 / (22 * 2))
    assert row["p"] == pytest.approx(paired_test(noisy).p)          # the largest class p (intersection-union)
    both = ledger_frame({"C13": {"pole": clear, "wire": clear + 1}}, {"C13": 2.1}, family_size=22)
    assert both.loc["C13", "verdict"] == "holds"


# --------------------------------------------------------------------------- differences from results


def _row(base, method, seed, miou, tag="val-source", kernel_sizes=None, thin=0.2, large=0.8, **extra) -> dict:
    """A row as load_results builds it (fractions)."""
    ks = kernel_sizes if kernel_sizes is not None else ("3,5,7" if method.startswith("aaf") else "")
    return {"run": f"{base}-{method}-s{seed}", "tag": tag, "base": base, "method": method,
            "trained_method": "baseline" if method == "crf" else method, "seed": seed, "kernel_sizes": ks,
            "miou": miou, "iou/pole": thin, "iou/wire": thin - 0.1, "iou/sky": large, "iou/ground": large - 0.1,
            "effective_kernel_size/pole": 3.2, "effective_kernel_size/sky": 5.0, **extra}


@pytest.fixture
def frame() -> pd.DataFrame:
    rows = []
    for s in (3, 0, 2, 1, 4):                                     # out of seed order on purpose
        rows += [_row("pspnet", "baseline", s, 0.50 + 0.01 * s),
                 _row("pspnet", "aaf", s, 0.52 + 0.01 * s + 0.001 * s, thin=0.25),
                 _row("pspnet", "aaf", s, 0.51 + 0.01 * s, kernel_sizes="3"),
                 _row("pspnet", "crf", s, 0.505 + 0.01 * s, tag="val-source-crf")]
    rows += [_row("pspnet", "gan", s, 0.49 + 0.01 * s) for s in (0, 1, 2)]
    return pd.DataFrame(rows)


def test_paired_differences_in_points_sorted_by_seed(frame):
    d = paired_differences(frame, "miou", "aaf", "baseline")
    assert d.index.tolist() == [0, 1, 2, 3, 4] and d.index.name == "seed"
    assert d.to_numpy() == pytest.approx([2.0, 2.1, 2.2, 2.3, 2.4])      # percentage points
    assert "pspnet/aaf" in d.name and "pspnet/baseline" in d.name
    k3 = paired_differences(frame, "miou", {"method": "aaf", "kernel_sizes": "3"}, "baseline")
    assert k3.to_numpy() == pytest.approx([1.0] * 5)
    crf = paired_differences(frame, "miou", "aaf", {"method": "crf", "tag": "val-source-crf"})
    assert crf.to_numpy() == pytest.approx([1.5, 1.6, 1.7, 1.8, 1.9])


def test_paired_differences_of_class_groups_and_kernel_sizes(frame):
    thin = paired_differences(frame, ["iou/pole", "iou/wire"], "aaf", "baseline")
    large = paired_differences(frame, ["iou/sky", "iou/ground"], "aaf", "baseline")
    assert (thin - large).to_numpy() == pytest.approx([5.0] * 5)
    kernel = paired_differences(frame, "effective_kernel_size/sky", "aaf", "aaf", metric_b="effective_kernel_size/pole")
    assert kernel.to_numpy() == pytest.approx([1.8] * 5)                  # pixels, not scaled
    assert stats.metric_scale("iou/pole") == 100.0 and stats.metric_scale("run") is None
    assert stats.metric_scale("mean_boundary_recall_cell") == 100.0 and stats.metric_scale("boundary_f_cell/pole") == 100.0


def test_a_missing_seed_is_an_error_that_names_it(frame):
    with pytest.raises(ValueError, match=r"pspnet/gan \(val-source\) lacks seed\(s\) 3, 4"):
        paired_differences(frame, "miou", "aaf", "gan")
    assert paired_differences(frame, "miou", "aaf", "gan", seeds=[0, 1, 2]).index.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match=r"pspnet/aaf \(val-source\) lacks seed\(s\) 5, 6, 7; pspnet/baseline"):
        paired_differences(frame, "miou", "aaf", "baseline", seeds=range(8))
    lacking = frame.drop(frame[(frame["method"] == "baseline") & (frame["seed"] == 2)].index)
    with pytest.raises(ValueError, match=r"miou: pspnet/baseline \(val-source\) lacks seed\(s\) 2$"):
        paired_differences(lacking, "miou", "aaf", "baseline")


def test_paired_differences_drops_nothing_silently(frame):
    twice = pd.concat([frame, frame[frame["method"] == "baseline"].head(1)])
    with pytest.raises(ValueError, match="more than one row for seed"):
        paired_differences(twice, "miou", "aaf", "baseline")
    missing = frame.copy()
    missing.loc[(missing["method"] == "baseline") & (missing["seed"] == 1), "miou"] = np.nan
    with pytest.raises(ValueError, match=r"has no value for seed\(s\) 1"):
        paired_differences(missing, "miou", "aaf", "baseline")
    with pytest.raises(ValueError, match="no column 'weight_by'"):
        paired_differences(frame, "miou", {"method": "aaf", "weight_by": "channel"}, "baseline")
    with pytest.raises(ValueError, match="no column 'boundary_f'"):
        paired_differences(frame, "boundary_f", "aaf", "baseline")
    with pytest.raises(ValueError, match="pass scale="):
        paired_differences(frame, "seed", "aaf", "baseline")
    with pytest.raises(ValueError, match="no runs"):
        paired_differences(frame, "miou", "emb", "affinity")


# --------------------------------------------------------------------------- the ledger frame


def test_the_ledger_frame_corrects_tests_and_decides():
    rng = np.random.default_rng(0)
    strong, weak = 2.0 + rng.normal(0, 0.3, 10), 0.1 + rng.normal(0, 0.3, 10)
    claims = {"C1": strong, "C2": weak, "C3": -strong, "C4": None, "C5": [1.0]}
    out = ledger_frame(claims, {"C1": 1.68, "C2": 2.27, "C3": 0.5, "C5": 1.0}, family_size=22,
                       texts={"C1": "affinity improves mIoU"})
    assert out.index.tolist() == ["C1", "C2", "C3", "C4", "C5"] and out.index.name == "id"
    assert out.columns.tolist() == ["claim", "n", "d", "ci_low", "ci_high", "ci_level", "p", "p_holm",
                                    "holm_rejects", "paper_effect", "verdict", "note"]
    test = paired_test(strong, alpha=0.05 / 22)
    assert (out.at["C1", "ci_low"], out.at["C1", "ci_high"]) == (pytest.approx(test.ci_low), pytest.approx(test.ci_high))
    assert out.at["C1", "p_holm"] == pytest.approx(min(1, 22 * test.p))     # the smallest p: m x p
    assert out["verdict"].tolist() == ["holds", "not reproduced", "does not hold", "inconclusive", "inconclusive"]
    assert out.at["C4", "note"] == "no results" and out.at["C5", "note"] == "one seed: no interval"
    assert out.at["C1", "claim"] == "affinity improves mIoU"
    with pytest.raises(ValueError, match="smaller than"):
        ledger_frame(claims, family_size=2)


def test_the_ledger_notes_a_small_effect_and_a_holm_rejection_with_a_wide_interval():
    d = np.array([0.6, 0.8, 0.7, 0.9, 0.65])
    out = ledger_frame({"C3": d}, {"C3": 5.0})
    assert out.at["C3", "verdict"] == "holds" and "smaller than the paper's" in out.at["C3", "note"]
    # one-sided p < alpha but the two-sided interval at alpha reaches 0
    edge = np.array([0.1, 1.2, 0.2, 1.4, 0.3])
    out = ledger_frame({"C1": edge}, {"C1": None})
    assert out.at["C1", "p"] < 0.05 and out.at["C1", "holm_rejects"] and out.at["C1", "ci_low"] <= 0
    assert out.at["C1", "verdict"] == "inconclusive" and "Holm rejects" in out.at["C1", "note"]


def test_style_ledger_colours_the_verdicts():
    out = ledger_frame({"C1": [2.0, 2.5, 3.0], "C2": [-3.0, -3.1, -2.9]}, {"C1": 1.0, "C2": 1.0})
    html = style_ledger(out).to_html()
    assert stats.VERDICT_COLOURS["holds"] in html and stats.VERDICT_COLOURS["does not hold"] in html
    assert "holds" in html and "does not hold" in html
