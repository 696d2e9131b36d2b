"""Paired statistics for the study's claims ledger (``protocol/study.yaml``).

The study trains every method with the *same* seeds, and a seed fixes the network's
initialisation and the order of the training data for every method.  Runs of one seed are
therefore paired, and a claim "A improves over B" is measured per seed::

    d_s = A_s - B_s          (s = the protocol's seeds of the claim)

and tested with a paired t-test on the ``d_s``.  The ledger tests about twenty claims at once, so
the p-values get Holm's step-down correction and the intervals a Bonferroni correction (see
:func:`corrected_alpha` for why the two differ), and the verdict of each claim follows from its
corrected interval and the paper's effect size (:data:`PAIRED_VERDICT_RULES`, :func:`verdict`).

Units: :func:`paired_differences` returns **percentage points** for metrics stored as fractions
(mIoU, IoU, pixel accuracy, boundary recall/precision/F: a difference of 0.01 is returned as
1.0), and the metric's own unit otherwise (the effective kernel size: pixels).  Everything
downstream (``d``, intervals, paper effects in :func:`ledger_frame`) is in the unit of the
differences it is given.

Flow::

    load_results() -> paired_differences() -> ledger_frame() [paired_test, holm, verdict] -> style_ledger()
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as _scipy_stats

__all__ = ["VERDICTS", "ALTERNATIVES", "PAIRED_VERDICT_RULES", "VERDICT_COLOURS", "verdict_css", "metric_scale",
           "paired_differences", "PairedTest", "paired_test", "holm", "corrected_alpha", "ci_verdict",
           "every_class_verdict", "ledger_frame", "style_ledger"]

VERDICTS = ("holds", "does not hold", "not reproduced", "inconclusive")
ALTERNATIVES = ("greater", "two-sided")

# Kept verbatim in protocol/study.yaml (statistics.verdict_rules; a test checks they are equal).
PAIRED_VERDICT_RULES = """\
Verdict rules of the study (fixed in protocol/study.yaml before its first run):

* A claim "A > B" is measured per seed, d_s = A_s - B_s, over the claim's seeds in the
  protocol; seeds are paired (a seed fixes the initialisation and the data order of every
  method). Differences are in percentage points for metrics that are fractions.
* Test: paired t-test on the d_s (Student t with n - 1 degrees of freedom), one-sided
  (H1: mean d > 0) for a directional claim, two-sided for a question.
* Multiplicity: Holm's step-down correction of the p-values over the m claims of the ledger
  that have a test, familywise alpha = 0.05.
* Interval: the two-sided Bonferroni interval mean(d) +- t(1 - alpha/(2m), n - 1) * se, at
  level 1 - alpha/m, so that all m intervals hold together with probability >= 1 - alpha.
* Verdict from the interval [lo, hi] and the paper's effect size e, checked in this order:
  1. holds: lo > 0;
  2. does not hold: hi <= 0;
  3. not reproduced: hi < e (only when the paper gives e);
  4. inconclusive: otherwise, and whenever the interval is undefined (fewer than 2 seeds).
* A claim about every class: each of its K classes gets its own interval, at level
  1 - alpha/(m K), and its own verdict by the rules above; the claim holds only if every
  class holds; otherwise it does not hold if some class does not hold, else it is not
  reproduced if some class is not reproduced, else inconclusive. Its p-value for the Holm
  correction is the largest of its classes' (intersection-union test).
"""

VERDICT_COLOURS = {"holds": "#c8e6c9", "does not hold": "#ffcdd2", "not reproduced": "#ffe0b2",
                   "inconclusive": "#eeeeee"}

# metrics stored as fractions (reported in percentage points) and in their own unit
_BOUNDARY = {"mean_boundary_recall", "boundary_recall", "mean_boundary_precision", "boundary_precision",
             "mean_boundary_f", "boundary_f"}
_FRACTIONS = {"miou", "iou", "pixel_accuracy", "instance_miou", "instance_iou",
              *_BOUNDARY, *(f"{m}_cell" for m in _BOUNDARY)}   # _cell: at one logit cell (8 px)
_OWN_UNIT = {"effective_kernel_size"}


# --------------------------------------------------------------------------- per-seed differences


def metric_scale(metric: str) -> float | None:
    """100 for a metric stored as a fraction (``miou``, ``iou/<class>``, ``pixel_accuracy``,
    boundary and instance metrics: differences in percentage points), 1 for the effective kernel
    size (pixels), None for a column this module does not know."""
    prefix = metric.split("/", 1)[0]
    return 100.0 if prefix in _FRACTIONS else 1.0 if prefix in _OWN_UNIT else None


def _side(spec, tag: str, base: str, kernel_sizes: str | None) -> dict:
    """The column filters of one side: a method name, or a mapping of column -> value that
    overrides the defaults (``{"method": "aaf", "kernel_sizes": "3,5", "tag": "val-source-crf"}``)."""
    filters = {"tag": tag, "base": base}
    if kernel_sizes is not None:
        filters["kernel_sizes"] = kernel_sizes
    if isinstance(spec, str):
        filters["method"] = spec
    elif isinstance(spec, Mapping) and "method" in spec:
        filters.update(spec)
    else:
        raise ValueError(f"paired_differences: a side is a method name or a mapping with 'method', got {spec!r}")
    return filters


def _describe(filters: dict) -> str:
    extra = ", ".join(f"{k}={v}" for k, v in filters.items() if k not in ("base", "method", "tag", "kernel_sizes"))
    ks = f" k={{{filters['kernel_sizes']}}}" if filters.get("kernel_sizes") not in (None, "", "3,5,7") else ""
    return f"{filters['base']}/{filters['method']}{ks} ({filters['tag']}{', ' + extra if extra else ''})"


def _side_values(df: pd.DataFrame, filters: dict, columns: list[str], explicit: set[str]) -> pd.Series:
    """Per seed, the side's value (the mean of ``columns`` when several, NaNs skipped)."""
    sel = df
    for key, value in filters.items():
        if key not in df.columns:
            if key == "kernel_sizes" and key not in explicit:
                continue            # a frame without kernel sizes: nothing to filter
            raise ValueError(f"paired_differences: the results have no column {key!r} ({_describe(filters)})")
        if key == "kernel_sizes":   # methods without kernel sizes have "" (select_rows' rule)
            sel = sel[(sel[key] == "") | (sel[key] == value)]
        else:
            sel = sel[sel[key] == value]
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"paired_differences: the results have no column {missing[0]!r}")
    if sel["seed"].isna().any():
        raise ValueError(f"paired_differences: {_describe(filters)} has a row without a seed")
    seeds = sel["seed"].astype(int)
    repeated = sorted(set(seeds[seeds.duplicated()]))
    if repeated:
        raise ValueError(f"paired_differences: {_describe(filters)} has more than one row for seed(s) "
                         f"{_seed_list(repeated)}; add a filter that tells them apart")
    values = sel[columns].to_numpy(np.float64)
    with np.errstate(all="ignore"):
        per_row = (values[:, 0] if len(columns) == 1 else
                   np.array([np.nanmean(r) if np.isfinite(r).any() else np.nan for r in values]))
    return pd.Series(per_row, index=seeds.to_numpy(), dtype=np.float64)


def _seed_list(seeds) -> str:
    return ", ".join(str(int(s)) for s in sorted(seeds))


def _scale_of(columns: list[str], scale: float | None) -> float:
    if scale is not None:
        return float(scale)
    scales = {metric_scale(c) for c in columns}
    if None in scales or len(scales) != 1:
        raise ValueError(f"paired_differences: no known unit for {columns[0]!r}{' and others' if len(columns) > 1 else ''}"
                         f"; pass scale= (100 for a fraction, 1 to keep the values)")
    return scales.pop()


def paired_differences(df: pd.DataFrame, metric: str | Sequence[str], a, b, tag: str = "val-source",
                       base: str = "pspnet", *, metric_b: str | Sequence[str] | None = None,
                       seeds: Iterable[int] | None = None, kernel_sizes: str | None = "3,5,7",
                       scale: float | None = None) -> pd.Series:
    """Per-seed differences ``a - b`` of ``metric``, sorted by seed (a Series indexed by ``seed``).

    ``df`` is :func:`~aafcore.report.results.load_results`' frame (one row per run and
    evaluation).  ``a`` and ``b`` are method names (``"aaf"``) or mappings of column -> value
    that override ``tag``, ``base`` and ``kernel_sizes`` for that side (``{"method": "crf",
    "tag": "val-source-crf"}``, ``{"method": "aaf", "kernel_sizes": "3"}``, ``{"method":
    "aaf", "weight_by": "channel"}``); AAF-family rows are kept only with ``kernel_sizes``
    (the rows of other methods have none, as in :func:`~aafcore.report.results.select_rows`).

    ``metric`` is a column (``"miou"``) or several columns whose per-run mean (NaNs skipped) is
    taken, e.g. the thin classes' ``iou/<class>``; ``metric_b`` (default ``metric``) is side B's.

    Units: a fraction metric (:func:`metric_scale`) is returned in **percentage points** (x100);
    the effective kernel size in pixels; other columns need ``scale``.

    Pairing: with ``seeds`` given, exactly those seeds are used and both sides must have each of
    them; without, both sides must have the same seeds.  Otherwise a one-line ``ValueError``
    names the side and the seeds it lacks; also when a side has two rows for one seed or a value
    is missing (NaN).  Nothing is dropped silently.
    """
    columns_a = [metric] if isinstance(metric, str) else list(metric)
    columns_b = columns_a if metric_b is None else [metric_b] if isinstance(metric_b, str) else list(metric_b)
    factor = _scale_of(columns_a + columns_b, scale)
    side_a, side_b = _side(a, tag, base, kernel_sizes), _side(b, tag, base, kernel_sizes)
    explicit_a = set(a) if isinstance(a, Mapping) else set()
    explicit_b = set(b) if isinstance(b, Mapping) else set()
    values_a = _side_values(df, side_a, columns_a, explicit_a)
    values_b = _side_values(df, side_b, columns_b, explicit_b)
    label = f"{columns_a[0] if len(columns_a) == 1 else 'mean of ' + ', '.join(columns_a)}"
    wanted = sorted(set(values_a.index) | set(values_b.index)) if seeds is None else sorted({int(s) for s in seeds})
    if not wanted:
        raise ValueError(f"paired_differences: {label}: no runs of {_describe(side_a)} or {_describe(side_b)}")
    problems = []
    for filters, values in ((side_a, values_a), (side_b, values_b)):
        lacking = [s for s in wanted if s not in values.index]
        if lacking:
            problems.append(f"{_describe(filters)} lacks seed(s) {_seed_list(lacking)}")
        unknown = [s for s in wanted if s in values.index and not np.isfinite(values[s])]
        if unknown:
            problems.append(f"{_describe(filters)} has no value for seed(s) {_seed_list(unknown)}")
    if problems:
        raise ValueError(f"paired_differences: {label}: " + "; ".join(problems))
    diff = (values_a[wanted].to_numpy() - values_b[wanted].to_numpy()) * factor
    name = f"{label}: {_describe(side_a)} - {_describe(side_b)}"
    return pd.Series(diff, index=pd.Index(wanted, name="seed"), name=name)


# --------------------------------------------------------------------------- the paired t-test


@dataclass(frozen=True)
class PairedTest:
    """A paired t-test on per-seed differences: ``n`` seeds, ``mean`` difference, its ``sd``
    (n - 1 in the denominator) and ``se = sd / sqrt(n)``, ``t = mean / se`` with ``df = n - 1``,
    the p-value of ``alternative`` and the two-sided ``1 - alpha`` interval ``[ci_low, ci_high]``."""

    n: int
    mean: float
    sd: float
    se: float
    t: float
    df: int
    p: float
    ci_low: float
    ci_high: float
    alpha: float
    alternative: str

    @property
    def level(self) -> float:
        """The interval's confidence level, ``1 - alpha``."""
        return 1.0 - self.alpha


def _check_alpha(alpha: float) -> float:
    if not (isinstance(alpha, (int, float)) and 0.0 < alpha < 1.0):
        raise ValueError(f"alpha must be a number in (0, 1), got {alpha!r}")
    return float(alpha)


def paired_test(diffs, alternative: str = "greater", alpha: float = 0.05) -> PairedTest:
    """The paired t-test of the differences ``diffs`` (A - B per seed; any sequence or Series).

    ``alternative="greater"``: H1 mean > 0, ``p = P(T_{n-1} >= t)``; ``"two-sided"``:
    ``p = 2 P(T_{n-1} >= |t|)`` (exact Student t, :data:`scipy.stats.t`; the same numbers as
    ``scipy.stats.ttest_rel(a, b, alternative=...)``).  The interval is two-sided at
    ``1 - alpha`` whatever the alternative: ``mean -+ t_{1 - alpha/2, n-1} se``.

    Edge cases, explicitly:

    * ``n = 1``: no spread can be estimated: ``sd``, ``se``, ``t``, ``p`` and the interval are
      NaN and ``df = 0`` (the verdict of a NaN interval is *inconclusive*);
    * zero variance (``n >= 2``, all differences equal): ``se = 0`` and the interval collapses to
      ``[mean, mean]``; as in ``scipy.stats.ttest_rel``, ``t = +-inf`` with p = 0 or 1 (two-sided
      0) for a non-zero mean and ``t = p = NaN`` for a zero mean;
    * no difference, or a NaN / infinite one: ``ValueError`` (pair the runs first,
      :func:`paired_differences`).
    """
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {', '.join(ALTERNATIVES)}, got {alternative!r}")
    alpha = _check_alpha(alpha)
    d = np.asarray(diffs, dtype=np.float64).ravel()
    if d.size == 0:
        raise ValueError("paired_test: no differences")
    if not np.isfinite(d).all():
        raise ValueError("paired_test: the differences contain NaN or infinite values")
    n, mean = int(d.size), float(d.mean())
    nan = float("nan")
    if n == 1:
        return PairedTest(1, mean, nan, nan, nan, 0, nan, nan, nan, alpha, alternative)
    sd = float(d.std(ddof=1))
    se, df = sd / math.sqrt(n), n - 1
    if se == 0.0:
        t = math.copysign(math.inf, mean) if mean != 0 else nan
    else:
        t = mean / se
    if math.isnan(t):
        p = nan
    elif alternative == "greater":
        p = float(_scipy_stats.t.sf(t, df))
    else:
        p = float(min(1.0, 2.0 * _scipy_stats.t.sf(abs(t), df)))
    half = float(_scipy_stats.t.ppf(1.0 - alpha / 2.0, df)) * se
    return PairedTest(n, mean, sd, se, t, df, p, mean - half, mean + half, alpha, alternative)


# --------------------------------------------------------------------------- multiplicity


def holm(pvalues: Mapping[str, float], alpha: float = 0.05) -> pd.DataFrame:
    """Holm-Bonferroni step-down correction of ``pvalues`` (claim id -> p).

    Sort the m p-values, ``p_(1) <= ... <= p_(m)``; the adjusted p-value of rank i is
    ``min(1, max_{j <= i} (m - j + 1) p_(j))`` (monotone in the rank, capped at 1), and a claim is
    rejected when its adjusted p-value is ``<= alpha`` -- the same as stepping down while
    ``p_(i) <= alpha / (m - i + 1)`` (the ``level`` column).  Ties keep the input order.

    A NaN p-value (a claim without a test result yet) still counts in m -- the family is fixed
    by the protocol, not by which results exist -- is ranked last and is never rejected.

    Returns one row per claim, in the input order: ``p``, ``rank``, ``level``, ``p_holm``, ``rejected``.
    """
    alpha = _check_alpha(alpha)
    keys = list(pvalues)
    p = np.array([float(pvalues[k]) if pvalues[k] is not None else np.nan for k in keys], dtype=np.float64)
    if np.any((p < 0) | (p > 1)):
        raise ValueError(f"holm: p-values must lie in [0, 1], got {dict(zip(keys, p))}")
    m = len(p)
    order = sorted(range(m), key=lambda i: (np.isnan(p[i]), 0.0 if np.isnan(p[i]) else p[i], i))
    adjusted, running = np.full(m, np.nan), 0.0
    rank = np.zeros(m, dtype=int)
    for position, i in enumerate(order):
        rank[i] = position + 1
        if np.isnan(p[i]):
            continue
        running = max(running, min(1.0, (m - position) * p[i]))
        adjusted[i] = running
    out = pd.DataFrame({"p": p, "rank": rank, "level": alpha / (m - rank + 1), "p_holm": adjusted,
                        "rejected": np.nan_to_num(adjusted, nan=np.inf) <= alpha}, index=pd.Index(keys, name="id"))
    return out


def corrected_alpha(alpha: float, m: int, classes: int = 1) -> float:
    """The per-interval error rate of the ledger's intervals: ``alpha / (m * classes)`` (Bonferroni).

    Why Bonferroni for the intervals while the p-values get Holm: Holm's procedure has no exact
    simultaneous confidence intervals.  Intervals at Holm's per-rank level ``alpha / (m - rank +
    1)`` depend on the ranks of the data and do not hold together; the simultaneous intervals
    compatible with Holm (Strassburger & Bretz, Stat. Med. 2008) give only the bound "> 0" for a
    rejected claim and no upper end, and the verdicts need both ends (*does not hold* and *not
    reproduced* read the upper end).  The Bonferroni intervals at ``1 - alpha/m`` are the
    standard conservative choice: all m of them cover their effects together with probability
    at least ``1 - alpha`` (Dunn 1961), whatever their dependence, so every verdict of the
    ledger -- holds, does not hold, not reproduced -- is made at familywise error ``<= alpha``.
    They are never less conservative than Holm: a claim whose interval lies above 0 has a
    one-sided p below ``alpha / (2m)`` and is rejected by Holm as well; a claim Holm rejects
    while its interval still reaches 0 stays *inconclusive* (the ledger notes it).

    A claim about every one of K classes spends its ``alpha / m`` on K class intervals
    (``classes=K``: ``alpha / (m K)``), so that its *does not hold* ("some class did not
    improve") is also controlled; its *holds* alone would need only ``alpha / m`` per class (an
    intersection-union test), the price of one rule for every verdict.
    """
    alpha = _check_alpha(alpha)
    if int(m) < 1 or int(classes) < 1:
        raise ValueError(f"corrected_alpha: m and classes must be >= 1, got m={m}, classes={classes}")
    return alpha / (int(m) * int(classes))


# --------------------------------------------------------------------------- verdicts


def _known(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and np.isfinite(value)


def verdict(ci_low: float, ci_high: float, paper_effect: float | None) -> str:
    """The verdict of one claim from its corrected interval ``[ci_low, ci_high]`` and the paper's
    effect size (same unit, e.g. percentage points; None or NaN when the paper gives none).

    The checks, in this order (:data:`PAIRED_VERDICT_RULES`):

    1. **holds** when ``ci_low > 0`` (0 itself is not above 0);
    2. **does not hold** when ``ci_high <= 0``;
    3. **not reproduced** when ``ci_high < paper_effect`` (strictly; skipped without a paper effect);
    4. **inconclusive** otherwise, and when either end is NaN (e.g. one seed).

    1 and 2 exclude each other (``ci_low <= ci_high``), and 2 comes before 3, so an interval at
    or below 0 is *does not hold* even when the paper's effect is above it.  An interval above 0
    but below the paper's effect *holds* (the direction is reproduced; :func:`ledger_frame`
    notes that it is smaller than the paper's).  ``ci_low > ci_high`` is a ``ValueError``.
    The package exports it as ``ci_verdict`` (``aafcore.report.verdict`` is the old ledger's rule).
    """
    if not (_known(ci_low) and _known(ci_high)):
        if any(v is not None and np.isinf(v) for v in (ci_low, ci_high)):
            raise ValueError(f"verdict: interval ends must be finite or NaN, got [{ci_low}, {ci_high}]")
        return "inconclusive"
    if ci_low > ci_high:
        raise ValueError(f"verdict: the interval's low end {ci_low} is above its high end {ci_high}")
    if ci_low > 0:
        return "holds"
    if ci_high <= 0:
        return "does not hold"
    if _known(paper_effect) and ci_high < paper_effect:
        return "not reproduced"
    return "inconclusive"


ci_verdict = verdict   # the package's name for it: aafcore.report.verdict is claims.verdict (the current ledger)


def every_class_verdict(verdicts: Mapping[str, str] | Iterable[str]) -> str:
    """The verdict of a claim about every class from its classes' verdicts (:func:`verdict`
    of each class's own interval), in this order: **holds** only if every class holds; else
    **does not hold** if some class does not hold; else **not reproduced** if some class is not
    reproduced; else **inconclusive** (also for no class at all)."""
    values = list(verdicts.values()) if isinstance(verdicts, Mapping) else list(verdicts)
    unknown = [v for v in values if v not in VERDICTS]
    if unknown:
        raise ValueError(f"every_class_verdict: unknown verdict {unknown[0]!r}; choose from {', '.join(VERDICTS)}")
    if values and all(v == "holds" for v in values):
        return "holds"
    for outcome in ("does not hold", "not reproduced"):
        if outcome in values:
            return outcome
    return "inconclusive"


# --------------------------------------------------------------------------- the ledger


def _test_row(test: PairedTest, effect) -> dict:
    row = {"n": test.n, "d": test.mean, "ci_low": test.ci_low, "ci_high": test.ci_high, "p": test.p,
           "verdict": verdict(test.ci_low, test.ci_high, effect)}
    notes = []
    if test.n == 1:
        notes.append("one seed: no interval")
    elif test.se == 0:
        notes.append("the same difference for every seed")
    row["notes"] = notes
    return row


def _every_class_row(per_class: Mapping, alternative: str, class_alpha: float, effect) -> dict:
    tests = {name: paired_test(d, alternative, class_alpha) for name, d in per_class.items()}
    verdicts = {name: verdict(t.ci_low, t.ci_high, effect) for name, t in tests.items()}
    weakest = min(tests, key=lambda k: (np.nan_to_num(tests[k].ci_low, nan=-np.inf), k))
    w = tests[weakest]
    held = sum(v == "holds" for v in verdicts.values())
    ps = [t.p for t in tests.values()]
    return {"n": min(t.n for t in tests.values()), "d": w.mean, "ci_low": w.ci_low, "ci_high": w.ci_high,
            "p": float("nan") if any(math.isnan(p) for p in ps) else max(ps),
            "verdict": every_class_verdict(verdicts),
            "notes": [f"{held} of {len(tests)} classes hold; d and interval of the weakest class, {weakest}"]}


def _claim_row(diffs, alternative: str, alpha: float, m: int, effect) -> dict:
    if diffs is None:
        nan = float("nan")
        return {"n": 0, "d": nan, "ci_low": nan, "ci_high": nan, "ci_level": 1 - corrected_alpha(alpha, m), "p": nan,
                "verdict": "inconclusive", "notes": ["no results"]}
    if isinstance(diffs, Mapping):
        if not diffs:
            raise ValueError("ledger_frame: a claim about every class needs at least one class")
        level_alpha = corrected_alpha(alpha, m, len(diffs))
        row = _every_class_row(diffs, alternative, level_alpha, effect)
    else:
        level_alpha = corrected_alpha(alpha, m)
        row = _test_row(paired_test(diffs, alternative, level_alpha), effect)
    row["ci_level"] = 1.0 - level_alpha
    return row


def ledger_frame(claims: Mapping[str, object], paper_effects: Mapping[str, float | None] | None = None, *,
                 alternatives: Mapping[str, str] | None = None, alpha: float = 0.05,
                 family_size: int | None = None, texts: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The study's ledger: one row per claim, indexed by claim id, in the order of ``claims``.

    ``claims`` maps a claim id to its per-seed differences (:func:`paired_differences`), to a
    mapping class -> differences for a claim about every class, or to None while it has no
    results.  ``paper_effects``: the paper's effect size per claim (same unit as the differences,
    percentage points for fraction metrics; None where the paper gives none).  ``alternatives``:
    ``"greater"`` (default) or ``"two-sided"`` per claim.  ``family_size`` is the m of the
    corrections (default: the number of claims; never fewer): the protocol's number of tested
    claims, so that a claim without results does not make the others' correction milder.

    Columns: ``claim`` (with ``texts``), ``n`` (seeds; for every class the fewest), ``d`` (mean
    difference), ``ci_low``/``ci_high`` (the Bonferroni interval, :func:`corrected_alpha`) at
    ``ci_level``, ``p`` (uncorrected; for every class the largest), ``p_holm`` and
    ``holm_rejects`` (:func:`holm` at ``alpha``), ``paper_effect``, ``verdict``
    (:func:`verdict`, :func:`every_class_verdict`) and ``note`` (one seed, no spread, an effect
    that holds but is smaller than the paper's, Holm rejecting while the interval reaches 0).
    """
    alpha = _check_alpha(alpha)
    m = len(claims) if family_size is None else int(family_size)
    if m < len(claims) or m < 1:
        raise ValueError(f"ledger_frame: family_size {family_size} is smaller than the {len(claims)} claims given")
    effects, alternatives = dict(paper_effects or {}), dict(alternatives or {})
    unknown = set(effects) - set(claims) or set(alternatives) - set(claims)
    if unknown:
        raise ValueError(f"ledger_frame: paper effect or alternative for unknown claim(s) {sorted(unknown)}")
    rows = {}
    for cid, diffs in claims.items():
        effect = effects.get(cid)
        row = _claim_row(diffs, alternatives.get(cid, "greater"), alpha, m, effect)
        row["paper_effect"] = float(effect) if _known(effect) else float("nan")
        rows[cid] = row
    pvalues = {cid: row["p"] for cid, row in rows.items()}
    pvalues.update({f"\0untested {i}": float("nan") for i in range(m - len(claims))})
    corrected = holm(pvalues, alpha)
    for cid, row in rows.items():
        row["p_holm"], row["holm_rejects"] = corrected.at[cid, "p_holm"], bool(corrected.at[cid, "rejected"])
        if row["verdict"] == "holds" and _known(row["paper_effect"]) and row["ci_high"] < row["paper_effect"]:
            row["notes"].append("holds, but smaller than the paper's effect")
        if row["holm_rejects"] and row["verdict"] != "holds":
            row["notes"].append("Holm rejects, but the interval reaches 0")
        row["note"] = "; ".join(row.pop("notes"))
    columns = ["n", "d", "ci_low", "ci_high", "ci_level", "p", "p_holm", "holm_rejects", "paper_effect", "verdict",
               "note"]
    out = pd.DataFrame.from_dict(rows, orient="index")[columns]
    out.index.name = "id"
    if texts is not None:
        out.insert(0, "claim", [texts.get(cid, "") for cid in out.index])
    return out


def verdict_css(verdict) -> str:
    """The CSS of a verdict cell in a pandas ``Styler``: its :data:`VERDICT_COLOURS` background, or ``""``."""
    return f"background-color: {VERDICT_COLOURS[verdict]}" if verdict in VERDICT_COLOURS else ""


def style_ledger(frame: pd.DataFrame, digits: int = 2):
    """:func:`ledger_frame` as a pandas ``Styler`` for the book: the verdict cells coloured
    (:data:`VERDICT_COLOURS`: green holds, red does not hold, orange not reproduced, grey
    inconclusive), differences, intervals and effects with ``digits`` decimals, p-values with
    3 significant digits, missing numbers as "-"."""
    numbers = {c: f"{{:.{digits}f}}" for c in ("d", "ci_low", "ci_high", "paper_effect") if c in frame.columns}
    numbers.update({c: "{:.3g}" for c in ("p", "p_holm") if c in frame.columns})
    if "ci_level" in frame.columns:
        numbers["ci_level"] = "{:.4%}"
    styler = frame.style.format(numbers, na_rep="-")
    if "verdict" in frame.columns:
        styler = styler.map(verdict_css, subset=["verdict"])
    return styler
