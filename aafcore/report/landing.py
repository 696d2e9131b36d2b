"""The book's landing page: the study's answer in one figure, one verdict table and a few sentences.

Everything here is computed from the study's results (``results/study/synthetic``) and its
registered protocol: :func:`claim_effects` pairs the seeds of each claim
(:func:`~aafcore.report.ledger.claim_differences`) and gives the mean difference with a plain
95 % t-interval, beside the paper's effect and the ledger's verdict (which uses the stricter
corrected interval of :func:`~aafcore.report.ledger.study_ledger`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from aafcore.report.ledger import claim_differences
from aafcore.report.protocol import ClaimSpec, Protocol, Side
from aafcore.report.results import method_label
from aafcore.report.stats import VERDICTS, paired_test, verdict_css

__all__ = ["claim_label", "claim_effects", "plot_claim_effects", "verdict_table", "answer_sentences"]

# the claims the figure and the table show: differences in percentage points of one metric
_SHOWN_KINDS = ("greater", "gain_thin")
_METRICS = {"miou": "mIoU", "iou": "IoU", "instance_miou": "instance mIoU", "instance_iou": "instance IoU",
            "mean_boundary_recall": "boundary recall", "pixel_accuracy": "pixel acc."}
_TAGS = {"val-source": "val", "test-source-ms": "test, ms+flip", "val-shifted": "unseen domain",
         "val-source-crf": "val + CRF"}


def _side_label(side: Side, sizes: bool) -> str:
    base = "FCN" if side.base == "fcn" else "PSPNet"
    if side.method == "baseline":
        label = base
    elif side.method == "crf":
        label = f"{base} + CRF"
    else:
        label = method_label(side.base, side.method) if side.base == "pspnet" else f"{base} + {method_label(side.base, side.method)}"
        if sizes:
            label += " {" + ", ".join(str(k) for k in side.kernel_sizes or (3, 5, 7)) + "}"
    if side.weight_by not in (None, "label"):
        label += f" (by {side.weight_by})"
    return label


def claim_label(claim: ClaimSpec) -> str:
    """A short label of what a claim compares, from its specification: ``"AAF - PSPNet: mIoU (val)"``;
    a thin/large contrast reads ``"AAF - PSPNet: IoU gain, thin - large (val)"``."""
    metric = _METRICS.get(claim.metric, claim.metric)
    if claim.kind == "gain_thin":
        metric += f" gain, {claim.contrast}"
    sizes = any(side.kernel_sizes not in (None, (3, 5, 7)) for side in (claim.a, claim.b))
    return f"{_side_label(claim.a, sizes)} - {_side_label(claim.b, sizes)}: {metric} ({_TAGS.get(claim.tag, claim.tag)})"


def claim_effects(df: pd.DataFrame, protocol: Protocol, ledger: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """One row per protocol claim measured in percentage points (kinds ``greater`` and
    ``gain_thin``), indexed by claim id, in the protocol's order.

    Columns: ``text``, ``label`` (:func:`claim_label`), ``n`` (paired seeds), ``d`` (mean of the per-seed differences A - B, pp),
    ``low`` / ``high`` (its two-sided t-interval at ``level``, NaN below 2 seeds), ``paper`` (the
    paper's smallest reported effect, pp; NaN for our controls), ``verdict`` (the ledger's, from
    the corrected interval) and ``alternative``.
    """
    verdicts = ledger.set_index("id")["verdict"]
    rows = []
    for claim in protocol.claims:
        if claim.kind not in _SHOWN_KINDS:
            continue
        diffs = claim_differences(df, claim, (protocol.benchmark or {}).get("spec", {}).get("class_groups"))
        n = 0 if diffs is None else len(diffs)
        d = low = high = math.nan
        if n:
            test = paired_test(diffs.to_numpy(), claim.alternative, alpha=1.0 - level)
            d, low, high = test.mean, test.ci_low, test.ci_high
        rows.append({"id": claim.id, "text": claim.text, "label": claim_label(claim), "n": n, "d": d, "low": low, "high": high,
                     "paper": math.nan if claim.paper_effect is None else float(claim.paper_effect),
                     "verdict": verdicts.get(claim.id, "inconclusive"), "alternative": claim.alternative})
    return pd.DataFrame(rows).set_index("id")


def plot_claim_effects(effects: pd.DataFrame, level: float = 0.95):
    """A dot-and-whisker chart, one row per claim of :func:`claim_effects`: our mean paired
    difference with its ``level`` interval (dots coloured by verdict; a whisker that leaves the
    axis ends in an arrow), the paper's effect as an orange diamond, 0 as a vertical line.
    Returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 0.42 * len(effects) + 1.4))
    y = np.arange(len(effects))[::-1]
    shown = np.concatenate([effects["d"].dropna(), effects["paper"].dropna(), [0.0]])
    span = max(float(np.abs(shown).max()) * 1.6, 2.0)
    lo, hi = -span * 0.45, span
    ax.axvline(0, color="0.4", lw=1)
    edge = {"holds": "#2e7d32", "does not hold": "#c62828", "not reproduced": "#ef6c00", "inconclusive": "0.35"}
    for yi, (cid, row) in zip(y, effects.iterrows()):
        if row["n"] == 0:
            ax.text(hi - 0.02 * span, yi, "no paired runs yet", va="center", ha="right", fontsize=9, color="0.45")
        else:
            if np.isfinite(row["low"]):
                a, b = max(row["low"], lo), min(row["high"], hi)
                ax.plot([a, b], [yi, yi], color=edge[row["verdict"]], lw=2)
                for end, clipped, marker in ((a, row["low"] < lo, "<"), (b, row["high"] > hi, ">")):
                    if clipped:
                        ax.plot(end, yi, marker=marker, color=edge[row["verdict"]], ms=7)
            ax.plot(row["d"], yi, "o", color=edge[row["verdict"]], ms=8, zorder=3)
        if np.isfinite(row["paper"]):
            ax.plot(row["paper"], yi, "D", color="#ff9800", mec="k", ms=7, zorder=4)
    ax.set_yticks(y)
    ax.set_yticklabels([f"{label}  {cid}" for cid, label in zip(effects.index, effects["label"])], fontsize=10)
    ax.set_xlim(lo, hi)
    ax.set_ylim(-0.7, len(effects) - 0.4)
    ax.set_xlabel("difference A - B (percentage points)", fontsize=11)
    handles = [plt.Line2D([], [], marker="o", color=edge[v], lw=2, label=f"ours ({v})") for v in VERDICTS
               if v in set(effects["verdict"])]
    handles.append(plt.Line2D([], [], marker="D", color="#ff9800", mec="k", lw=0, label="the paper"))
    ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(handles), fontsize=9,
              frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def _interval(row) -> str:
    if row["n"] == 0:
        return "no runs yet"
    if not np.isfinite(row["low"]):
        return f"{row['d']:+.1f} (1 seed)"
    return f"{row['d']:+.1f} [{row['low']:+.1f}, {row['high']:+.1f}]"


def verdict_table(effects: pd.DataFrame, level: float = 0.95):
    """:func:`claim_effects` as a compact table for the page (a pandas ``Styler``): the claim, our
    mean difference with its ``level`` interval, the paper's effect, the seeds and the verdict,
    its cell coloured as in the ledger (:data:`~aafcore.report.stats.VERDICT_COLOURS`)."""
    ours = f"ours, pp [{level:.0%} CI]"
    table = pd.DataFrame({
        "claim": effects.index,
        "what the paper says": effects["text"],
        ours: effects.apply(_interval, axis=1),
        "paper, pp": effects["paper"].map(lambda v: f"{v:+.2f}" if np.isfinite(v) else "–"),
        "seeds": effects["n"],
        "verdict": effects["verdict"],
    })
    return (table.style.hide(axis="index").map(verdict_css, subset=["verdict"]).set_uuid("landing-verdicts")
            .set_td_classes(pd.DataFrame({ours: "aaf-nowrap", "claim": "aaf-nowrap", "verdict": "aaf-nowrap"},
                                         index=table.index, columns=table.columns).fillna(""))
            .set_properties(subset=["what the paper says"], **{"text-align": "left"}))


def answer_sentences(effects: pd.DataFrame, ledger: pd.DataFrame, runs_landed: int, runs_planned: int,
                     level: float = 0.95) -> str:
    """The landing page's answer in markdown: how much of the study has landed, the three headline
    differences (C2 AAF - baseline, C1 Affinity - baseline, C3 AAF - Affinity on PSPNet's val
    mIoU) beside the paper's, and the verdict count of the ledger."""
    counts = ledger["verdict"].value_counts()
    tested = ledger[ledger["verdict"] != "not tested"]
    lines = [f"**Status.** {runs_landed} of the study's {runs_planned} trainings have landed; each claim is "
             f"tested on the paired seeds that have its evaluations, and the verdicts below change as the rest lands."]
    if "C2" in effects.index and effects.loc["C2", "n"]:
        parts = []
        for cid, what in (("C2", "AAF over the baseline"), ("C1", "the affinity field loss over the baseline"),
                          ("C3", "AAF over the affinity field loss")):
            row = effects.loc[cid]
            if row["n"]:
                ci = (f" ({level:.0%} CI [{row['low']:+.2f}, {row['high']:+.2f}], {int(row['n'])} seeds)"
                      if np.isfinite(row["low"]) else " (one seed)")
                parts.append(f"{what} {row['d']:+.2f} points{ci}; the paper reports at least {row['paper']:+.2f}")
        lines.append("**PSPNet's val mIoU on benchmark v2**, paired by seed: " + "; ".join(parts) + ".")
    lines.append("**Verdicts** of the " + f"{len(tested)} tested claims: "
                 + ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS) + ".")
    return "\n\n".join(lines)

