"""The claims ledger: each claim of the paper, what we measured, and a verdict under rules fixed
before the multi-seed results were looked at (:data:`VERDICT_RULES`).  The claims are data
(:data:`CLAIMS`); each kind of claim has one function that measures it."""

from __future__ import annotations

import html
import math
import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from aafcore.report.results import class_names, select_rows
from aafcore.report.tables import MISSING, kernel_sizes_frame, seed_values

__all__ = ["VERDICT_RULES", "verdict", "Claim", "CLAIMS", "claims_ledger", "ledger_table", "verdict_summary"]
# also public, imported from this module (the package re-exports __all__ only): BADGE_COLOURS,
# verdict_badge, short_source, effect_text, compact_ledger, ledger_html

# metrics stored as fractions: the ledger shows them in percent (differences in percentage points)
_FRACTIONS = ("miou", "iou", "pixel_accuracy", "instance_miou", "instance_iou", "mean_boundary_recall",
              "boundary_recall", "mean_boundary_precision", "boundary_precision", "mean_boundary_f", "boundary_f")


def _scale(column: str) -> float:
    """100 for a metric stored as a fraction (shown in percent), else 1."""
    return 100.0 if column.split("/", 1)[0] in _FRACTIONS else 1.0

VERDICT_RULES = """\
Verdict rules (committed before the multi-seed runs in results/ were trained):

* A claim "A is better than B on metric M" compares the seed means: d = mean(A) - mean(B),
  with the standard error se = sqrt(s_A^2/n_A + s_B^2/n_B) (sample standard deviations over
  the n seeds of each).
* **holds** when both sides have at least 3 seeds and d > 2 se;
* **does not hold** when both sides have at least 3 seeds and d <= 0 (the claimed direction is
  not seen even in the means);
* **inconclusive** otherwise: 0 < d <= 2 se, or fewer than 3 seeds on a side (then the observed
  direction is reported, never a verdict).
* A claim about a *difference of gains* (e.g. "larger on thin classes") uses d = gain_thin -
  gain_large with the standard error of the four means combined.
* "For every category": holds when d_c > 0 for every class c (seed means) and the overall claim
  holds; does not hold when some class has d_c <= 0.
* Kernel sizes (Fig. 4): holds when the thin classes' mean effective kernel size is below the
  large classes' in every AAF seed (at least 3), does not hold when it is not below in any.
* Run-time cost (Table 1): holds when the AAF model is the baseline's network (AAF acts in
  training only, so the same architecture and inference code) and the dense CRF, timed side by
  side with the network in ``benchmarks/evaluate.py``, adds more than 10% to its time.
"""


def verdict(a: np.ndarray, b: np.ndarray, min_seeds: int = 3) -> tuple[str, float, float]:
    """``(verdict, d, se)`` for the claim "A > B" under :data:`VERDICT_RULES`."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) == 0 or len(b) == 0:
        return "inconclusive", float("nan"), float("nan")
    d = float(a.mean() - b.mean())
    se = _se(a, b)
    return _decide(d, se, min(len(a), len(b)) >= min_seeds), d, se


def _se(*groups) -> float:
    terms = [np.var(g, ddof=1) / len(g) if len(g) > 1 else np.nan for g in groups]
    return float(math.sqrt(sum(terms))) if all(np.isfinite(terms)) else float("nan")


def _decide(d: float, se: float, enough: bool) -> str:
    if not enough or not np.isfinite(d):
        return "inconclusive"
    if d <= 0:
        return "does not hold"
    return "holds" if np.isfinite(se) and d > 2 * se else "inconclusive"


@dataclass(frozen=True)
class Claim:
    """One claim of the paper and how we test it.

    ``kind``: ``greater`` (A > B on ``column`` of evaluation ``tag``), ``gain_thin`` (A's gain
    over B is larger on the thin than on the large classes), ``every_class`` (A > B on every
    class of ``column``), ``kernel_sizes`` (Fig. 4) or ``run_time`` (Table 1).  ``tag`` may be
    ``"<tag of A>|<tag of B>"``.
    """

    id: str
    source: str
    text: str
    kind: str
    column: str = "miou"
    tag: str = "val-source"
    a: tuple[str, str] = ("pspnet", "aaf")
    b: tuple[str, str] = ("pspnet", "baseline")
    a_kernel_sizes: str = "3,5,7"
    b_kernel_sizes: str = "3,5,7"

    @property
    def tags(self) -> tuple[str, str]:
        """The evaluations of side A and side B."""
        tags = self.tag.split("|")
        return tags[0], tags[-1]

    def values(self, df: pd.DataFrame, column: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Side A's and side B's values of ``column`` (default: the claim's) over their seeds."""
        column = column or self.column
        (tag_a, tag_b), (base_a, method_a), (base_b, method_b) = self.tags, self.a, self.b
        return (seed_values(df, base_a, method_a, tag_a, column, self.a_kernel_sizes),
                seed_values(df, base_b, method_b, tag_b, column, self.b_kernel_sizes))


CLAIMS: tuple[Claim, ...] = (
    Claim("C1", "5.1, Tables 2-3", "With PSPNet as the base, the affinity field loss improves mIoU.",
          "greater", a=("pspnet", "affinity")),
    Claim("C2", "5.1, Tables 2-3", "With PSPNet as the base, AAF improves mIoU.", "greater"),
    Claim("C3", "5.1, Tables 2-3", "AAF improves mIoU more than the affinity field loss.", "greater",
          b=("pspnet", "affinity")),
    Claim("C4", "5.1, Tables 2-3", "With FCN as the base, the affinity field loss improves mIoU.", "greater",
          a=("fcn", "affinity"), b=("fcn", "baseline")),
    Claim("C5", "5.1, Tables 2-3", "With FCN as the base, AAF improves mIoU.", "greater",
          a=("fcn", "aaf"), b=("fcn", "baseline")),
    Claim("C6", "5.1, Table 2", "AAF improves mIoU more than the GAN baseline does.", "greater",
          b=("pspnet", "gan")),
    Claim("C7", "5.1, Table 2", "AAF improves mIoU more than the pixel-embedding (Emb.) baseline does.",
          "greater", b=("pspnet", "emb")),
    Claim("C8", "5.1", "AAF's improvements over PSPNet are mostly in categories with fine structures.",
          "gain_thin", column="iou"),
    Claim("C9", "5.1, Tables 4-5", "AAF improves mIoU on the test split with multi-scale + flip inference.",
          "greater", tag="test-source-ms"),
    Claim("C10", "5.2, Tables 6-7", "AAF improves the instance-wise mIoU.", "greater", column="instance_miou"),
    Claim("C11", "5.2", "The instance-wise improvements are more prominent on fine-structured categories.",
          "gain_thin", column="instance_iou"),
    Claim("C12", "5.3, Tables 8-9", "AAF improves the overall boundary recall.", "greater",
          column="mean_boundary_recall"),
    Claim("C13", "5.3", "The boundary recall is improved for every category.", "every_class",
          column="boundary_recall"),
    Claim("C14", "5.4, Fig. 4", "Fine-structured classes get smaller effective kernel sizes (edge term).",
          "kernel_sizes"),
    Claim("C15", "5.4, Table 10", "Kernel sizes {3, 5} do better than {3} alone.", "greater",
          a_kernel_sizes="3,5", b=("pspnet", "aaf"), b_kernel_sizes="3"),
    Claim("C16", "5.4, Table 10", "Kernel sizes {3, 5} do at least as well as {3, 5, 7}.", "greater",
          a_kernel_sizes="3,5", b=("pspnet", "aaf")),
    Claim("C17", "5.5, Table 11", "Trained on one domain, AAF has a higher mIoU than PSPNet on an unseen one.",
          "greater", tag="val-shifted"),
    Claim("C18", "5.5, Table 11", "... and a higher pixel accuracy on the unseen domain.", "greater",
          column="pixel_accuracy", tag="val-shifted"),
    Claim("C19", "1, Table 1", "AAF outperforms CRF post-processing of the base network.", "greater",
          b=("pspnet", "crf"), tag="val-source|val-source-crf"),
    Claim("C20", "1, Table 1, 6", "AAF adds no inference cost, unlike CRF (run-time inference).", "run_time"),
)


# --------------------------------------------------------------------------- one function per kind
# each returns the measured part of a ledger row: measure, A, B, d, se, verdict


def _finite(v) -> int:
    return int(np.isfinite(np.asarray(v, dtype=np.float64)).sum())


def _greater(df: pd.DataFrame, claim: Claim, groups: dict, benchmark: dict | None) -> dict:
    a, b = claim.values(df)
    v, d, se = verdict(a, b)
    scale = _scale(claim.column)
    return dict(measure=f"{claim.column} ({claim.tags[0]})", A=_fmt(a, scale), B=_fmt(b, scale), d=d, se=se,
                verdict=v, n=f"{_finite(a)}/{_finite(b)}", unit="pp" if scale == 100 else "", scale=scale)


def _group_means(df: pd.DataFrame, side: tuple[str, str], tag: str, prefix: str, members: list[str]) -> np.ndarray:
    """Per seed of ``side``, the mean of ``prefix/<class>`` over ``members`` (seeds without any value dropped)."""
    cols = [f"{prefix}/{n}" for n in members]
    if not cols:
        return np.array([])
    sel = select_rows(df, tag, side[0], [side[1]]).sort_values("seed")
    with warnings.catch_warnings():   # classes without instances are all-nan
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(sel[cols].to_numpy(np.float64), axis=1)
    return means[np.isfinite(means)]


def _gain_thin(df: pd.DataFrame, claim: Claim, groups: dict, benchmark: dict | None) -> dict:
    parts = {(key, group): _group_means(df, side, claim.tags[0], claim.column, groups.get(group, []))
             for side, key in ((claim.a, "a"), (claim.b, "b")) for group in ("thin", "large")}

    def mean(v):
        return float(v.mean()) if len(v) else float("nan")

    gain_thin = mean(parts["a", "thin"]) - mean(parts["b", "thin"])
    gain_large = mean(parts["a", "large"]) - mean(parts["b", "large"])
    d = float(gain_thin - gain_large)
    se = _se(*parts.values())
    enough = min(len(v) for v in parts.values()) >= 3
    scale = _scale(claim.column)
    return dict(measure=f"gain in {claim.column}: thin {scale * gain_thin:+.2f}, large {scale * gain_large:+.2f} pp",
                A=_fmt(parts["a", "thin"], scale), B=_fmt(parts["b", "thin"], scale), d=d, se=se,
                verdict=_decide(d, se, enough), n=f"{min(len(parts['a', g]) for g in ('thin', 'large'))}/"
                                                  f"{min(len(parts['b', g]) for g in ('thin', 'large'))}",
                unit="pp", scale=scale)


def _every_class(df: pd.DataFrame, claim: Claim, groups: dict, benchmark: dict | None) -> dict:
    diffs, n_min = {}, 99
    for name in class_names(df, claim.column):
        a, b = claim.values(df, f"{claim.column}/{name}")
        n_min = min(n_min, len(a), len(b))
        diffs[name] = float(np.nanmean(a) - np.nanmean(b)) if len(a) and len(b) else np.nan
    overall = verdict(*claim.values(df, "mean_boundary_recall"))[0]
    improved = [n for n, v in diffs.items() if v > 0]
    if n_min < 3:
        v = "inconclusive"
    elif len(improved) < len(diffs):
        v = "does not hold"
    else:
        v = "holds" if overall == "holds" else "inconclusive"
    return dict(measure=f"{len(improved)} of {len(diffs)} classes improved (d: the smallest class difference)",
                A="", B="", d=min(diffs.values()) if diffs else np.nan, se=np.nan, verdict=v,
                n=f"{n_min if diffs else 0}", unit="pp, worst class", scale=_scale(claim.column))


def _kernel_sizes(df: pd.DataFrame, claim: Claim, groups: dict, benchmark: dict | None) -> dict:
    ks = kernel_sizes_frame(df, groups=groups)
    per_seed = (ks.groupby(["seed", "group"])["effective_kernel_size"].mean().unstack() if len(ks)
                else pd.DataFrame())
    both = {"thin", "large"} <= set(per_seed.columns)
    below = per_seed["thin"] < per_seed["large"] if both else pd.Series([], dtype=bool)
    if len(below) < 3:
        v = "inconclusive"
    else:
        v = "holds" if below.all() else ("does not hold" if not below.any() else "inconclusive")
    return dict(measure="mean effective kernel size, thin vs large, per seed",
                A=_fmt(per_seed["thin"].to_numpy()) if "thin" in per_seed else "",
                B=_fmt(per_seed["large"].to_numpy()) if "large" in per_seed else "",
                d=float((per_seed["thin"] - per_seed["large"]).mean()) if len(below) else np.nan,
                se=np.nan, verdict=v, n=f"{len(below)}", unit="px", scale=1.0)


def _run_time(df: pd.DataFrame, claim: Claim, groups: dict, benchmark: dict | None) -> dict:
    ms = (benchmark or {}).get("median_ms_per_image", {})
    net, crf = ms.get("network_single_scale", np.nan), ms.get("crf", np.nan)
    same = select_rows(df, "val-source", "pspnet", ["baseline", "aaf"])
    same_net = len(same) > 0 and same["run"].map(lambda r: r.split("-")[0]).nunique() == 1
    ok = np.isfinite(net) and np.isfinite(crf) and len(same) > 0
    v = ("holds" if same_net and crf > 0.10 * net else "does not hold") if ok else "inconclusive"
    return dict(measure="ms/image side by side (benchmarks/evaluate.py, one image at a time): network | CRF extra; "
                        "d = CRF / network",
                A=f"{net:.2f} ms" if ok else "", B=f"{crf:.2f} ms" if ok else "",
                d=crf / net if ok else np.nan, se=np.nan, verdict=v, n="", unit="ratio", scale=1.0)


_MEASURE = {"greater": _greater, "gain_thin": _gain_thin, "every_class": _every_class,
            "kernel_sizes": _kernel_sizes, "run_time": _run_time}


def _fmt(values, scale: float = 1.0) -> str:
    """``40.33 ± 0.45 (3 seeds, 39.90–40.80)``: mean ± std over seeds, in percent when ``scale`` is 100."""
    values = scale * np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return MISSING
    if values.size == 1:
        return f"{values[0]:.2f} (1 seed)"
    return f"{values.mean():.2f} ± {values.std(ddof=1):.2f} ({values.size} seeds, {values.min():.2f}–{values.max():.2f})"


def _claim_row(df: pd.DataFrame, claim: Claim, groups: dict, benchmark: dict | None = None) -> dict:
    if claim.kind not in _MEASURE:
        raise ValueError(f"unknown claim kind {claim.kind!r}; choose from {', '.join(_MEASURE)}")
    return {"id": claim.id, "source": claim.source, "claim": claim.text,
            **_MEASURE[claim.kind](df, claim, groups, benchmark)}


def claims_ledger(df: pd.DataFrame, groups: dict, benchmark: dict | None = None, claims=CLAIMS) -> pd.DataFrame:
    """One row per claim: what we measured (A, B as mean ± std over seeds, with the range, in
    percent for fraction metrics), the difference ``d`` of the means and its standard error ``se``
    in the metric's stored unit (fractions: 0.01 = 1 point), the verdict of :data:`VERDICT_RULES`,
    ``n`` (seeds of A/B), ``unit`` of ``scale * d`` (``pp``, ``px``, ``ratio``: C20's d is the CRF's
    time over the network's) and ``scale``.  ``benchmark``: the content of
    ``results/benchmarks/evaluate_cpu.json`` (claim C20; see
    :func:`~aafcore.report.results.load_benchmark`)."""
    return pd.DataFrame([_claim_row(df, c, groups, benchmark) for c in claims])


def _scaled(ledger: pd.DataFrame, column: str) -> pd.Series:
    scale = ledger["scale"] if "scale" in ledger.columns else 1.0
    return ledger[column] * scale


def ledger_table(ledger: pd.DataFrame) -> pd.DataFrame:
    """The ledger in full as the book shows it: indexed by claim id, the verdict next to the
    claim, then measure, ``d`` (signed, 2 decimals, in ``unit``: percentage points, px, or a
    ratio), ``se``, ``n``, A, B and the paper's section; a missing number shows as "–"."""
    shown = ledger.copy()
    shown["d"] = _scaled(ledger, "d").map(lambda v: MISSING if pd.isna(v) else f"{v:+.2f}")
    shown["se"] = _scaled(ledger, "se").map(lambda v: MISSING if pd.isna(v) else f"{v:.2f}")
    for column in ("unit", "n"):
        if column not in shown.columns:
            shown[column] = ""
    return shown[["id", "verdict", "claim", "measure", "d", "se", "unit", "n", "A", "B", "source"]].set_index("id")


def verdict_summary(ledger: pd.DataFrame) -> str:
    """``**holds**: 10, **inconclusive**: 9, ...``: how many claims got each verdict (markdown), most first."""
    return ", ".join(f"**{v}**: {n}" for v, n in ledger["verdict"].value_counts().items())


# --------------------------------------------------------------------------- the compact ledger (HTML)

# verdict -> (background, text colour) of its badge: green holds, red does not hold, orange not
# reproduced, grey inconclusive or not tested
BADGE_COLOURS = {"holds": ("#2e7d32", "#ffffff"), "does not hold": ("#c62828", "#ffffff"),
                 "not reproduced": ("#ef6c00", "#ffffff"), "inconclusive": ("#757575", "#ffffff"),
                 "not tested": ("#bdbdbd", "#212121")}


def verdict_badge(verdict: str) -> str:
    """An HTML badge for ``verdict`` (inline styles: they survive Jupyter Book's HTML), coloured by
    :data:`BADGE_COLOURS` (an unknown verdict is grey)."""
    bg, fg = BADGE_COLOURS.get(verdict, ("#9e9e9e", "#ffffff"))
    return (f'<span style="background:{bg};color:{fg};padding:1px 8px;border-radius:10px;'
            f'white-space:nowrap;font-size:0.85em">{html.escape(verdict)}</span>')


def short_source(source: str) -> str:
    """The paper's place of a claim, short enough for a table cell: ``"Sec. 5.1, Tables 2-3"`` ->
    ``"§5.1, Tab. 2-3"`` (a bare section number, ``"5.1"``, gets its ``§`` too); remarks in parentheses
    (several words) and references to project documents are dropped."""
    text = re.sub(r"\s*\([^)]* [^)]*\)", "", source)       # "(the adversary selects ...)", not "(a)"
    parts = [p.strip() for p in re.split(r"[;,]", text) if p.strip() and ".md" not in p]
    text = ", ".join(f"§{p}" if re.fullmatch(r"\d+(\.\d+)*", p) else p for p in parts)
    for long, short in (("Sec. ", "§"), ("Tables ", "Tab. "), ("Table ", "Tab. ")):
        text = text.replace(long, short)
    return text


def effect_text(d: float, low: float, high: float, unit: str) -> str:
    """``+2.54 [+1.34, +3.74]``: an effect and its interval, in percentage points (``unit``
    ``pp``: no suffix, the column says so), with ``px`` for pixels and as ``ratio 7.99`` for a
    time ratio; "–" when there is no effect."""
    if not np.isfinite(d):
        return MISSING
    if unit == "ratio":
        return f"ratio {d:.2f}"
    suffix = "" if unit.startswith("pp") else f" {unit}"
    worst = " (worst class)" if "worst" in unit else ""
    if np.isfinite(low) and np.isfinite(high):
        return f"{d:+.2f} [{low:+.2f}, {high:+.2f}]{suffix}{worst}"
    return f"{d:+.2f}{suffix}{worst}"


def compact_ledger(ledger: pd.DataFrame) -> pd.DataFrame:
    """:func:`claims_ledger` in one short row per claim: ``id``, ``claim``, ``verdict``, ``effect``
    (d ± 2 se in percentage points, the rules' margin; px for C14; C20's time ratio), ``n`` (seeds
    of A/B) and ``source`` (:func:`short_source`); for :func:`ledger_html`."""
    d, se = _scaled(ledger, "d"), _scaled(ledger, "se")
    units = ledger["unit"] if "unit" in ledger.columns else pd.Series("", index=ledger.index)
    effects = [effect_text(v, v - 2 * e, v + 2 * e, str(u or "")) for v, e, u in zip(d, se, units)]
    return pd.DataFrame({"id": ledger["id"], "claim": ledger["claim"], "verdict": ledger["verdict"],
                         "effect": effects, "n": ledger["n"] if "n" in ledger.columns else "",
                         "source": [short_source(s) for s in ledger["source"]]})


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut.rstrip(",;:") + " …"


def ledger_html(compact: pd.DataFrame, details: str | None = None, effect_header: str = "effect, pp [interval]",
                claim_chars: int = 90, order=("holds", "does not hold", "not reproduced", "inconclusive",
                                              "not tested")) -> str:
    """The compact ledger as HTML (inline styles, no scrolling at the book's width): a verdict
    count line, then one row per claim of ``compact`` (columns ``id``, ``claim``, ``verdict``,
    ``effect``, ``n``, ``source``) with the verdict as a badge (:func:`verdict_badge`) and the claim
    cut to ``claim_chars`` characters (the full text in its tooltip), and ``details`` (HTML: the
    full ledger) in a collapsed section below."""
    counts = compact["verdict"].value_counts()
    verdicts = [v for v in order if v in counts.index] + [v for v in counts.index if v not in order]
    summary = " &nbsp; ".join(f"{verdict_badge(v)} {int(counts[v])}" for v in verdicts)
    cell = "padding:3px 6px;border-bottom:1px solid #e0e0e0;vertical-align:top;text-align:left"
    nowrap = cell + ";white-space:nowrap"
    head = "".join(f'<th style="{nowrap};border-bottom:2px solid #9e9e9e">{h}</th>'
                   for h in ("", "claim", "verdict", effect_header, "n", "source"))
    rows = []
    for _, r in compact.iterrows():
        text = str(r["claim"])
        rows.append(f'<tr><td style="{nowrap}"><b>{html.escape(str(r["id"]))}</b></td>'
                    f'<td style="{cell}" title="{html.escape(text)}">{html.escape(_shorten(text, claim_chars))}</td>'
                    f'<td style="{nowrap}">{verdict_badge(str(r["verdict"]))}</td>'
                    f'<td style="{nowrap}">{html.escape(str(r["effect"]))}</td>'
                    f'<td style="{nowrap}">{html.escape(str(r["n"]))}</td>'
                    f'<td style="{nowrap}">{html.escape(str(r["source"]))}</td></tr>')
    out = (f'<p><b>{len(compact)} claims:</b> &nbsp; {summary}</p>'
           f'<table style="border-collapse:collapse;width:100%;font-size:0.9em">'
           f'<thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>')
    if details:
        out += ('<details style="margin-top:0.8em"><summary>The full ledger: every column</summary>'
                f'<div style="overflow-x:auto">{details}</div></details>')
    return out
