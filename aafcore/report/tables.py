"""The paper-style tables of our results: one row per (base, method), and the gains over the base
beside the paper's.

Values are fractions in the results and percentages in the tables (IoU, instance IoU, pixel
accuracy and the boundary metrics; the paper prints boundary recall as 0-1 with 3 decimals, which is
the same precision as one decimal of a percentage).  Our classes are not the paper's (the synthetic benchmark, not VOC or
Cityscapes), so what compares is the *mean* and each method's *gain over its base network*.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from aafcore.report.results import (METHOD_ORDER, PAPER_FRACTION_TABLES, base_label, class_names, dataset_label, method_label,
                                    paper_table, select_rows)

__all__ = ["METRICS", "KERNEL_SIZE_SETS", "method_table", "table", "seed_values", "compare_gains",
           "gains_table", "domain_gains", "kernel_size_table", "kernel_sizes_frame", "class_order", "kernel_size_summary"]

# metric of the results -> (column prefix of the per-class values, scale for display: percent)
METRICS = {"iou": ("iou", 100.0), "instance_iou": ("instance_iou", 100.0),
           "boundary_recall": ("boundary_recall", 100.0), "boundary_precision": ("boundary_precision", 100.0),
           "boundary_f": ("boundary_f", 100.0),
           # at one logit cell (8 px): evaluations written before these metrics existed lack them
           "boundary_recall_cell": ("boundary_recall_cell", 100.0),
           "boundary_precision_cell": ("boundary_precision_cell", 100.0),
           "boundary_f_cell": ("boundary_f_cell", 100.0)}
MISSING = "–"       # the book's one marker of a missing value (an en dash)
# the header of a method table's mean column, per metric
_MEAN_HEADERS = {"iou": "mIoU", "instance_iou": "inst. mIoU", "boundary_recall": "mean recall",
                 "boundary_precision": "mean precision", "boundary_f": "mean F",
                 "boundary_recall_cell": "mean recall", "boundary_precision_cell": "mean precision",
                 "boundary_f_cell": "mean F"}
_MEANS = {"iou": "miou", "instance_iou": "instance_miou", "boundary_recall": "mean_boundary_recall",
          "boundary_precision": "mean_boundary_precision", "boundary_f": "mean_boundary_f",
          "boundary_recall_cell": "mean_boundary_recall_cell", "boundary_precision_cell": "mean_boundary_precision_cell",
          "boundary_f_cell": "mean_boundary_f_cell"}
KERNEL_SIZE_SETS = ("3", "3,5", "3,5,7")     # Table 10


def _method_row(b: str, m: str, g: pd.DataFrame, metric: str, names: list[str], groups: dict | None,
                extra) -> dict:
    prefix, scale = METRICS[metric]
    row = {"base": base_label(b), "method": method_label(b, m),
           "_order": (b != "fcn", METHOD_ORDER.index(m) if m in METHOD_ORDER else 99)}
    for name in names:
        row[name] = g[f"{prefix}/{name}"].mean() * scale
    means = g[_MEANS[metric]] * scale
    row["mean"] = means.mean()
    for group, members in (groups or {}).items():
        row[group] = float(np.nanmean([row[n] for n in members])) if members else np.nan
    for col in extra:
        row[col] = g[col].mean() * scale
    row["± std"] = means.std(ddof=1) if len(g) > 1 else np.nan
    row["seeds"] = len(g)
    return row


def _one_tag_table(df, metric, tag, base, methods, kernel_sizes, groups, extra) -> pd.DataFrame:
    names = class_names(df, METRICS[metric][0])
    sel = select_rows(df, tag, base, methods, kernel_sizes)
    if len(sel) and _MEANS[metric] not in df.columns:
        raise ValueError(f"no {metric!r} in these results (evaluations written before it existed lack it: "
                         f"evaluate them again)")
    rows = [_method_row(b, m, g, metric, names, groups, extra)
            for (b, m), g in sel.groupby(["base", "method"], sort=False)]
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    return out.sort_values("_order", kind="stable").drop(columns="_order").reset_index(drop=True)


def _concat(frames) -> pd.DataFrame:
    """``pd.concat`` of the non-empty frames (an empty one would make pandas warn)."""
    frames = [f for f in frames if len(f)]
    return pd.concat(frames).reset_index(drop=True) if frames else pd.DataFrame()


def method_table(df: pd.DataFrame, metric: str = "iou", tag: str = "val-source", base: str | None = None,
                 methods=None, kernel_sizes: str = "3,5,7", groups: dict | None = None,
                 extra: list[str] = (), with_crf: bool = False) -> pd.DataFrame:
    """A paper-style table: one row per (base, method), one column per class and the mean.

    Values are the mean over the seeds found, in percent (IoU, boundary metrics); ``seeds`` counts them and ``± std`` is the seed standard deviation of the mean column
    (blank for one seed).  ``groups`` (e.g. ``{"thin": [...], "large": [...]}``) adds group means;
    ``extra`` adds scalar columns (e.g. ``pixel_accuracy``) on the same scale as the mean.
    ``with_crf`` appends the rows of the evaluation ``<tag>-crf`` (the baseline + dense CRF, row
    ``CRF``) after the others.
    """
    out = _one_tag_table(df, metric, tag, base, methods, kernel_sizes, groups, extra)
    if with_crf:
        crf = _one_tag_table(df, metric, f"{tag}-crf", base, methods, kernel_sizes, groups, extra)
        out = _concat([out, crf])
    out.attrs.update(metric=metric, classes=class_names(df, METRICS[metric][0]))
    return out


# the book's column headers for the results' own names
_HEADERS = {"Method": "method", "pixel_accuracy": "pixel acc.", "paper_table": "paper table", "median_ms": "median ms",
            "our seeds": "seeds", "difference of gains": "gain difference"}
_FIRST = ("mean", "± std", "seeds", "large", "mid", "thin", "pixel_accuracy")


def _cell(v, digits: int):
    if isinstance(v, (float, np.floating)):
        return MISSING if np.isnan(v) else f"{v:.{digits}f}"
    if v is None or v is pd.NA:
        return MISSING
    return v


def table(df: pd.DataFrame, digits: int = 2, part: str = "all") -> pd.DataFrame:
    """``df`` as the book shows it: floats with ``digits`` decimals, missing values as
    :data:`MISSING` ("–": one seed has no standard deviation, stuff classes no instance-wise IoU);
    other cells as they are.

    Headers read as words (``pixel acc.``, ``seeds``); the mean column of a :func:`method_table`
    is named for its metric (``mIoU``, ``inst. mIoU``, ``mean recall``); the row labels ``base``
    and ``method`` become the index (no 0..N row numbers), and a method table shows its mean,
    ``± std`` and ``seeds`` first, then the class groups and the classes.

    ``part`` (a :func:`method_table` only): ``"all"``, ``"summary"`` (the mean, spread, seeds,
    groups and extra columns: the table that fits the page) or ``"classes"`` (the mean and one
    column per class)."""
    if part not in ("all", "summary", "classes"):
        raise ValueError(f"table: part must be 'all', 'summary' or 'classes', got {part!r}")
    classes = list(df.attrs.get("classes", []))
    metric = df.attrs.get("metric")
    out = df.copy()
    if {"mean", "seeds"} <= set(out.columns):
        first = [c for c in _FIRST if c in out.columns]
        extra = [c for c in out.columns if c not in first and c not in classes and c not in ("base", "method")]
        if part == "summary":
            keep = first + extra
        elif part == "classes":
            keep = ["mean"] + [c for c in classes if c in out.columns]
        else:
            keep = first + [c for c in out.columns if c not in first]
        out = out[[c for c in ("base", "method") if c in out.columns] + [c for c in keep if c not in ("base", "method")]]
    elif part != "all":
        raise ValueError("table: part='summary' or 'classes' needs a method table (columns mean and seeds)")
    headers = dict(_HEADERS)
    if metric in _MEAN_HEADERS:
        headers["mean"] = _MEAN_HEADERS[metric]
    out = out.map(lambda v: _cell(v, digits)).rename(columns=headers)
    labels = [c for c in ("base", "method") if c in out.columns]
    if labels and isinstance(out.index, pd.RangeIndex):
        out = out.set_index(labels)
    return out


def seed_values(df: pd.DataFrame, base: str, method: str, tag: str, column: str,
                kernel_sizes: str = "3,5,7") -> np.ndarray:
    """The values of ``column`` over the seeds of one (base, method, evaluation), seed order."""
    sel = select_rows(df, tag, base, [method], kernel_sizes).sort_values("seed")
    return sel[column].to_numpy(dtype=np.float64)


# --------------------------------------------------------------------------- gains over the base


def _first(frame: pd.DataFrame, column: str, default=np.nan):
    return frame[column].iloc[0] if len(frame) else default


def _gain_row(prow: pd.Series, paper_base: float, ours: pd.DataFrame, ours_base: float,
              paper_column: str, ours_column: str) -> dict:
    orow = ours[ours["method"] == prow["Method"]] if len(ours) else ours
    ours_value = float(_first(orow, ours_column))
    return {"base": prow["base"], "method": prow["Method"], "paper": float(prow[paper_column]),
            "paper gain": float(prow[paper_column] - paper_base),
            "ours": ours_value, "ours gain": ours_value - ours_base,
            "our seeds": int(_first(orow, "seeds", 0))}


def compare_gains(df: pd.DataFrame, paper_number: int, metric: str = "iou", tag: str = "val-source",
                  paper_mean_column: str | None = None, ours_column: str = "mean",
                  crf_tag: str | None = None) -> pd.DataFrame:
    """Each method's gain over its base in the paper (table ``paper_number``) beside ours.

    One row per row of the paper's table, grouped by base (FCN, then PSPNet): ``paper`` and
    ``paper gain`` (over the base's row), ``ours`` and ``ours gain`` (seed means of
    :func:`method_table`; NaN where we have no run: no number is invented), ``our seeds`` and
    ``difference of gains`` = ours gain - paper gain.  The paper's ``CRF`` row is ours from the
    evaluation ``crf_tag`` (default ``<tag>-crf``, the PSPNet baseline + dense CRF), its gain over
    the baseline of ``tag``.  ``paper_mean_column`` (default ``mIoU`` or ``mean``) and
    ``ours_column`` (default ``mean``, or an ``extra`` column of :func:`method_table` such as
    ``pixel_accuracy``) choose what is compared.  Everything is in percent: the paper's boundary
    recall (Tables 8-9, printed 0-1) is multiplied by 100.
    """
    paper = paper_table(paper_number)
    paper_column = paper_mean_column or [c for c in paper.columns if c in ("mIoU", "mean")][0]
    if paper_number in PAPER_FRACTION_TABLES:
        paper[paper_column] = 100.0 * paper[paper_column]
    extra = [] if ours_column == "mean" else [ours_column]
    ours = method_table(df, metric, tag, extra=extra)
    crf = method_table(df, metric, crf_tag or f"{tag}-crf", methods=["crf"], extra=extra)
    ours = _concat([ours, crf])
    rows = []
    for label in ("FCN", "PSPNet"):
        p = paper[paper["base"] == label]
        o = ours[ours["base"] == label] if len(ours) else ours
        paper_base = float(_first(p[p["Method"] == label], paper_column))
        ours_base = float(_first(o[o["method"] == label], ours_column)) if len(o) else np.nan
        rows += [_gain_row(prow, paper_base, o, ours_base, paper_column, ours_column) for _, prow in p.iterrows()]
    out = pd.DataFrame(rows)
    if len(out):
        out["difference of gains"] = out["ours gain"] - out["paper gain"]
    return out


def gains_table(df: pd.DataFrame, paper_numbers, metric: str = "iou", tag: str = "val-source") -> pd.DataFrame:
    """:func:`compare_gains` for each of ``paper_numbers`` (e.g. ``(2, 3)``: VOC and Cityscapes),
    one below the other, with the column ``paper_table`` (``2 (VOC)``) before ``difference of gains``."""
    frames = []
    for n in paper_numbers:
        gains = compare_gains(df, n, metric, tag)
        if len(gains):
            label = f"{n} ({dataset_label(str(paper_table(n)['dataset'].iloc[0]))})"
            gains.insert(gains.columns.get_loc("difference of gains"), "paper_table", label)
        frames.append(gains)
    return _concat(frames)


def domain_gains(df: pd.DataFrame, paper_number: int = 11, tag: str = "val-shifted") -> pd.DataFrame:
    """Table 11 (train on one domain, test on an unseen one): each method's mIoU and pixel-accuracy
    gain over PSPNet, the paper's beside ours (:func:`compare_gains` on both columns, points);
    methods without a run of ours and the base itself are left out."""
    miou = compare_gains(df, paper_number, "iou", tag)
    accuracy = compare_gains(df, paper_number, "iou", tag, paper_mean_column="pix. acc", ours_column="pixel_accuracy")
    keep = (miou["method"] != miou["base"]) & miou["ours gain"].notna()
    out = pd.DataFrame({"method": miou["method"], "paper mIoU gain": miou["paper gain"],
                        "ours mIoU gain": miou["ours gain"], "paper pixel-acc. gain": accuracy["paper gain"],
                        "ours pixel-acc. gain": accuracy["ours gain"]})
    return out[keep].set_index("method")


# --------------------------------------------------------------------------- Table 10, Fig. 4


def kernel_size_table(df: pd.DataFrame, groups: dict | None = None, sets=KERNEL_SIZE_SETS) -> pd.DataFrame:
    """Table 10: one row per AAF kernel-size set found (PSPNet, val, IoU %), labelled ``AAF k∈{3,5}``;
    empty when there is none."""
    rows = [method_table(df, "iou", "val-source", base="pspnet", methods=["aaf"], kernel_sizes=ks, groups=groups)
            .assign(method=f"AAF k∈{{{ks}}}") for ks in sets]
    out = _concat(rows)
    out.attrs.update(metric="iou", classes=class_names(df, "iou"))
    return out


def kernel_sizes_frame(df: pd.DataFrame, widths: dict | None = None, groups: dict | None = None,
                       kernel_sizes: str = "3,5,7") -> pd.DataFrame:
    """Long format: one row per (AAF run seed, class) with ``effective_kernel_size`` (edge term),
    the class's ``group`` and structure ``width_px`` when given."""
    sel = select_rows(df, "val-source", None, ["aaf"], kernel_sizes)
    sel = sel[sel["base"] == "pspnet"]
    names = class_names(df, "effective_kernel_size")
    group_of = {n: g for g, members in (groups or {}).items() for n in members}
    rows = []
    for _, r in sel.iterrows():
        for n in names:
            rows.append({"seed": r["seed"], "class": n, "effective_kernel_size": r[f"effective_kernel_size/{n}"],
                         "group": group_of.get(n, r.get("group")), "width_px": (widths or {}).get(n)})
    return pd.DataFrame(rows, columns=["seed", "class", "effective_kernel_size", "group", "width_px"])


def class_order(info: dict) -> list[str]:
    """The classes of :func:`~aafcore.report.results.class_info` by typical structure width, thinnest
    first (Fig. 4's order; classes without a width first, in their own order)."""
    return sorted(info["names"], key=lambda n: info["widths"].get(n, 0))


def kernel_size_summary(frame: pd.DataFrame, info: dict) -> pd.DataFrame:
    """Fig. 4 as numbers: per class (in :func:`class_order`), its group, typical width and the
    ``mean``, ``std`` and ``count`` over seeds of the effective kernel size in ``frame``
    (:func:`kernel_sizes_frame`)."""
    order = class_order(info)
    summary = frame.groupby("class")["effective_kernel_size"].agg(["mean", "std", "count"]).reindex(order)
    group_of: dict[str, str] = {}
    for group, members in info["groups"].items():
        for name in members:
            group_of.setdefault(name, group)
    summary.insert(0, "group", [group_of.get(n, "") for n in summary.index])
    summary.insert(1, "typical width (px)", [info["widths"].get(n) for n in summary.index])
    return summary
