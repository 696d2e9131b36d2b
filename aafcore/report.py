"""The book's tables, figures and claims ledger, computed from the results under ``results/``.

The notebooks only call these functions and display what they return, so that everything a
reader sees is tested here.  Data flow::

    results/<profile>/<dataset>/<run>/metrics.json           (aaf train: val, single scale)
    results/<profile>/<dataset>/<run>/eval/<tag>/metrics.json (aaf evaluate: other splits/modes)
        -> load_results() -> one row per (run, evaluation) -> method_table(), paper_table(), ...

The paper's numbers come from the project's own copy of its tables (``aafcore/paper_tables``).
Values are fractions in the results and percentages (IoU) or 0-1 (boundary) in the tables, as
the paper prints them.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["PAPER_TABLES", "paper_table", "load_results", "method_label", "method_table", "seed_values",
           "compare_gains", "table", "Claim", "CLAIMS", "VERDICT_RULES", "verdict", "claims_ledger",
           "kernel_sizes_frame", "run_time_table", "class_info", "at_project_root"]

PAPER_TABLES = Path(__file__).resolve().parent / "paper_tables"
METHOD_ORDER = ["baseline", "crf", "gan", "emb", "affinity", "aaf"]
_LABELS = {"crf": "CRF", "gan": "GAN", "emb": "Emb.", "affinity": "Affinity", "aaf": "AAF"}
_BASE_LABELS = {"fcn": "FCN", "pspnet": "PSPNet"}
# metric of the results -> (column prefix of the per-class values, scale for display)
METRICS = {"iou": ("iou", 100.0), "instance_iou": ("instance_iou", 100.0),
           "boundary_recall": ("boundary_recall", 1.0), "boundary_precision": ("boundary_precision", 1.0),
           "boundary_f": ("boundary_f", 1.0)}
_MEANS = {"iou": "miou", "instance_iou": "instance_miou", "boundary_recall": "mean_boundary_recall",
          "boundary_precision": "mean_boundary_precision", "boundary_f": "mean_boundary_f"}


def at_project_root() -> Path:
    """Make the repository root the working directory (notebooks use paths like ``results/``
    relative to it, whichever directory Jupyter, papermill or nbval starts them in); returns it."""
    import os

    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "aafcore").is_dir():
        os.chdir(root)
    return Path.cwd()


# --------------------------------------------------------------------------- the paper's tables


def paper_table(number: int) -> pd.DataFrame:
    """Table ``number`` (1-11) of the paper as printed, with the columns ``table_id``, ``dataset``,
    ``split``, ``metric``, ``base`` in front (see ``aafcore/paper_tables/README.md``)."""
    path = PAPER_TABLES / f"table{number}.tsv"
    if not path.is_file():
        raise ValueError(f"the paper has no table {number} (tables 1-11; {path} not found)")
    header = path.read_text().splitlines()[0].split("\t")
    if header[0] == "table":
        header[0] = "table_id"      # VOC has a class named "table"
    header = [h.strip("$") for h in header]   # Table 10's "$k = 3$": no LaTeX in an HTML table header
    df = pd.read_csv(path, sep="\t", dtype=str, header=0, names=header)
    for col in df.columns:
        converted = pd.to_numeric(df[col], errors="coerce")
        if converted.notna().all():
            df[col] = converted
    return df


# --------------------------------------------------------------------------- our results


def method_label(base: str, method: str) -> str:
    """The paper's row label: the base's name for the baseline, else the method's (``AAF``)."""
    return _BASE_LABELS.get(base, base) if method == "baseline" else _LABELS.get(method, method)


def _flatten(result: dict, run_dir: Path, tag: str) -> dict:
    cfg = result.get("config", {})
    ev = result.get("evaluation", {})
    inference = ev.get("inference") or {}
    crf = inference.get("crf") is not None
    method = "crf" if crf and cfg.get("method") == "baseline" else cfg.get("method")
    row = {"run": run_dir.name, "tag": tag, "base": cfg.get("base"),
           "method": method, "trained_method": cfg.get("method"), "seed": cfg.get("seed"),
           "kernel_sizes": ",".join(str(k) for k in cfg.get("kernel_sizes", [])) if cfg.get("method") == "aaf" else "",
           "split": ev.get("split"), "domain": ev.get("domain"), "mode": ev.get("mode"),
           "path": str(run_dir / ("metrics.json" if tag == "train" else f"eval/{tag}/metrics.json"))}
    prov = result.get("provenance", {})
    for key in ("inference_seconds_per_image", "crf_seconds_per_image", "median_step_seconds",
                "wall_seconds", "git_commit"):
        row[key] = prov.get(key)
    metrics = result.get("metrics", {})
    names = result.get("class_names", [])
    for key, value in metrics.items():
        if isinstance(value, list):
            for name, v in zip(names, value):
                row[f"{key}/{name}"] = np.nan if v is None else float(v)
        else:
            row[key] = np.nan if value is None else float(value)
    if result.get("aaf"):
        for name, k in zip(names, result["aaf"].get("effective_kernel_size", [])):
            row[f"effective_kernel_size/{name}"] = float(k)
    return row


def load_results(profile: str = "cpu", dataset: str = "synthetic", results_root: str | Path = "results") -> pd.DataFrame:
    """One row per evaluation of every run under ``results/<profile>/<dataset>/``.

    ``tag`` is the evaluation (``val-source``, ``test-source-ms``, ``val-shifted``,
    ``val-source-crf``, ...); a run's own ``metrics.json`` (the val pass of ``aaf train``) is the
    ``val-source`` row unless ``eval/val-source/`` exists (same code, same numbers, written later
    for runs trained before every metric existed).  ``method`` is ``crf`` for a baseline evaluated
    with the dense CRF.  Per-class values are columns ``<metric>/<class>``.
    """
    root = Path(results_root) / profile / dataset
    if not root.is_dir():
        raise FileNotFoundError(f"no results under {root} (run `aaf reproduce --profile {profile}`)")
    rows = []
    for run_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        evals = {p.parent.name: p for p in sorted(run_dir.glob("eval/*/metrics.json"))}
        own = run_dir / "metrics.json"
        if own.is_file() and "val-source" not in evals:
            rows.append(_flatten(json.loads(own.read_text()), run_dir, "val-source"))
            rows[-1]["path"] = str(own)
        for tag, path in evals.items():
            rows.append(_flatten(json.loads(path.read_text()), run_dir, tag))
    if not rows:
        raise FileNotFoundError(f"no metrics.json under {root}")
    return pd.DataFrame(rows)


def class_info(profile: str = "cpu", dataset: str = "synthetic", results_root: str | Path = "results") -> dict:
    """Classes of the results: ``names``, ``groups`` (``{"thin": [...], "large": [...]}``) and, for
    the synthetic benchmark, each class's typical structure ``widths`` in pixels (from its spec)."""
    root = Path(results_root) / profile / dataset
    first = next(iter(sorted(root.glob("*/metrics.json"))), None)
    if first is None:
        raise FileNotFoundError(f"no run under {root}")
    result = json.loads(first.read_text())
    names = result["class_names"]
    groups = {g: [names[i] for i in idx] for g, idx in result.get("class_groups", {}).items()}
    widths: dict[str, float] = {}
    spec = result.get("provenance", {}).get("data", {}).get("spec")
    if dataset == "synthetic" and spec:
        from aafcore.data import synthetic_class_table

        widths = {c["name"]: c["width_px"] for c in synthetic_class_table(spec["image_size"], spec["thin_width"])}
    return {"names": names, "groups": groups, "widths": widths}


def class_names(df: pd.DataFrame, metric: str = "iou") -> list[str]:
    """Class names in the order of the results' columns ``<metric>/<class>``."""
    return [c.split("/", 1)[1] for c in df.columns if c.startswith(f"{metric}/")]


def _select(df: pd.DataFrame, tag: str, base: str | None = None, methods=None, kernel_sizes: str = "3,5,7"):
    sel = df[df["tag"] == tag]
    if base is not None:
        sel = sel[sel["base"] == base]
    if methods is not None:
        sel = sel[sel["method"].isin(methods)]
    return sel[(sel["kernel_sizes"] == "") | (sel["kernel_sizes"] == kernel_sizes)]


def method_table(df: pd.DataFrame, metric: str = "iou", tag: str = "val-source", base: str | None = None,
                 methods=None, kernel_sizes: str = "3,5,7", groups: dict | None = None,
                 extra: list[str] = ()) -> pd.DataFrame:
    """A paper-style table: one row per (base, method), one column per class and the mean.

    Values are the mean over the seeds found, shown as the paper prints them (IoU in %, boundary
    0-1); ``seeds`` counts them and ``± std`` is the seed standard deviation of the mean column
    (blank for one seed).  ``groups`` (e.g. ``{"thin": [...], "large": [...]}``) adds group means;
    ``extra`` adds scalar columns (e.g. ``pixel_accuracy``) on the same scale as the mean.
    """
    prefix, scale = METRICS[metric]
    names = class_names(df, prefix)
    sel = _select(df, tag, base, methods, kernel_sizes)
    rows = []
    for (b, m), g in sel.groupby(["base", "method"], sort=False):
        row = {"base": _BASE_LABELS.get(b, b), "method": method_label(b, m), "_order": (b != "fcn", METHOD_ORDER.index(m) if m in METHOD_ORDER else 99)}
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
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    return out.sort_values("_order", kind="stable").drop(columns="_order").reset_index(drop=True)


def table(df: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """``df`` as the book shows it: floats with ``digits`` decimals, missing values as "-"
    (one seed has no standard deviation, stuff classes no instance-wise IoU); other cells as they are."""
    def cell(v):
        if isinstance(v, (float, np.floating)):
            return "-" if np.isnan(v) else f"{v:.{digits}f}"
        return v
    return df.map(cell)


def seed_values(df: pd.DataFrame, base: str, method: str, tag: str, column: str,
                kernel_sizes: str = "3,5,7") -> np.ndarray:
    """The values of ``column`` over the seeds of one (base, method, evaluation), seed order."""
    sel = _select(df, tag, base, [method], kernel_sizes).sort_values("seed")
    return sel[column].to_numpy(dtype=np.float64)


def compare_gains(df: pd.DataFrame, paper_number: int, metric: str = "iou", tag: str = "val-source",
                  paper_mean_column: str | None = None) -> pd.DataFrame:
    """Each method's gain over its base in the paper (table ``paper_number``) beside ours.

    The classes differ (VOC or Cityscapes in the paper, the synthetic benchmark here), so the
    comparison is of the *mean* and of the gain over the base architecture, per base and method.
    """
    paper = paper_table(paper_number)
    mean_col = paper_mean_column or [c for c in paper.columns if c in ("mIoU", "mean")][0]
    ours = method_table(df, metric, tag)
    rows = []
    for base_label in ("FCN", "PSPNet"):
        p = paper[paper["base"] == base_label]
        o = ours[ours["base"] == base_label] if not ours.empty else ours
        if p.empty:
            continue
        p_base = p[p["Method"] == base_label][mean_col]
        o_base = o[o["method"] == base_label]["mean"] if not o.empty else pd.Series(dtype=float)
        for _, prow in p.iterrows():
            orow = o[o["method"] == prow["Method"]] if not o.empty else o
            ours_mean = float(orow["mean"].iloc[0]) if len(orow) else np.nan
            rows.append({
                "base": base_label, "method": prow["Method"],
                "paper": float(prow[mean_col]),
                "paper gain": float(prow[mean_col] - p_base.iloc[0]) if len(p_base) else np.nan,
                "ours": ours_mean,
                "ours gain": ours_mean - float(o_base.iloc[0]) if len(o_base) and len(orow) else np.nan,
                "our seeds": int(orow["seeds"].iloc[0]) if len(orow) else 0,
            })
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- claims ledger

VERDICT_RULES = """\
Verdict rules (fixed before any multi-seed result was looked at):

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
    class of ``column``), ``kernel_sizes`` (Fig. 4) or ``run_time`` (Table 1).
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


def _values(df, side: tuple[str, str], tag: str, column: str, kernel_sizes: str) -> np.ndarray:
    base, method = side
    return seed_values(df, base, method, tag, column, kernel_sizes)


def _claim_row(df: pd.DataFrame, claim: Claim, groups: dict, benchmark: dict | None = None) -> dict:
    tags = claim.tag.split("|")
    tag_a, tag_b = tags[0], tags[-1]
    row = {"id": claim.id, "source": claim.source, "claim": claim.text}
    if claim.kind == "greater":
        a = _values(df, claim.a, tag_a, claim.column, claim.a_kernel_sizes)
        b = _values(df, claim.b, tag_b, claim.column, claim.b_kernel_sizes)
        v, d, se = verdict(a, b)
        row.update(measure=f"{claim.column} ({tag_a})", A=_fmt(a), B=_fmt(b), d=d, se=se, verdict=v)
    elif claim.kind == "gain_thin":
        prefix = claim.column
        parts = {}
        for side, key in ((claim.a, "a"), (claim.b, "b")):
            for group in ("thin", "large"):
                cols = [f"{prefix}/{n}" for n in groups.get(group, [])]
                sel = _select(df, tag_a, side[0], [side[1]]).sort_values("seed")
                with warnings.catch_warnings():   # classes without instances are all-nan
                    warnings.simplefilter("ignore", RuntimeWarning)
                    parts[key, group] = np.nanmean(sel[cols].to_numpy(np.float64), axis=1) if cols else np.array([])
                parts[key, group] = parts[key, group][np.isfinite(parts[key, group])]
        def mean(v):
            return float(v.mean()) if len(v) else float("nan")

        gain_thin = mean(parts["a", "thin"]) - mean(parts["b", "thin"])
        gain_large = mean(parts["a", "large"]) - mean(parts["b", "large"])
        d = float(gain_thin - gain_large)
        se = _se(*parts.values())
        enough = min(len(v) for v in parts.values()) >= 3
        row.update(measure=f"gain in {prefix}: thin {gain_thin:+.4f}, large {gain_large:+.4f}",
                   A=_fmt(parts["a", "thin"]), B=_fmt(parts["b", "thin"]), d=d, se=se,
                   verdict=_decide(d, se, enough))
    elif claim.kind == "every_class":
        names = class_names(df, claim.column)
        diffs = {}
        n_min = 99
        for name in names:
            a = _values(df, claim.a, tag_a, f"{claim.column}/{name}", claim.a_kernel_sizes)
            b = _values(df, claim.b, tag_b, f"{claim.column}/{name}", claim.b_kernel_sizes)
            n_min = min(n_min, len(a), len(b))
            diffs[name] = float(np.nanmean(a) - np.nanmean(b)) if len(a) and len(b) else np.nan
        overall = verdict(_values(df, claim.a, tag_a, "mean_boundary_recall", claim.a_kernel_sizes),
                          _values(df, claim.b, tag_b, "mean_boundary_recall", claim.b_kernel_sizes))[0]
        improved = [n for n, v in diffs.items() if v > 0]
        if n_min < 3:
            v = "inconclusive"
        elif len(improved) < len(diffs):
            v = "does not hold"
        else:
            v = "holds" if overall == "holds" else "inconclusive"
        row.update(measure=f"{len(improved)} of {len(diffs)} classes improved", A="", B="",
                   d=min(diffs.values()) if diffs else np.nan, se=np.nan, verdict=v)
    elif claim.kind == "kernel_sizes":
        ks = kernel_sizes_frame(df, groups=groups)
        per_seed = (ks.groupby(["seed", "group"])["effective_kernel_size"].mean().unstack() if len(ks)
                    else pd.DataFrame())
        below = (per_seed.get("thin") < per_seed.get("large")) if {"thin", "large"} <= set(per_seed.columns) else pd.Series([], dtype=bool)
        if len(below) < 3:
            v = "inconclusive"
        else:
            v = "holds" if below.all() else ("does not hold" if not below.any() else "inconclusive")
        row.update(measure="mean effective kernel size, thin vs large, per seed",
                   A=_fmt(per_seed["thin"].to_numpy()) if "thin" in per_seed else "",
                   B=_fmt(per_seed["large"].to_numpy()) if "large" in per_seed else "",
                   d=float((per_seed["thin"] - per_seed["large"]).mean()) if len(below) else np.nan,
                   se=np.nan, verdict=v)
    elif claim.kind == "run_time":
        bench = benchmark or {}
        ms = bench.get("median_ms_per_image", {})
        net, crf = ms.get("network_single_scale", np.nan), ms.get("crf", np.nan)
        same = _select(df, "val-source", "pspnet", ["baseline", "aaf"])
        same_net = len(same) > 0 and same["run"].map(lambda r: r.split("-")[0]).nunique() == 1
        ok = np.isfinite(net) and np.isfinite(crf) and len(same) > 0
        v = ("holds" if same_net and crf > 0.10 * net else "does not hold") if ok else "inconclusive"
        row.update(measure="ms/image side by side (benchmarks/evaluate.py): network | CRF extra",
                   A=f"{net:.2f}" if ok else "", B=f"{crf:.2f}" if ok else "",
                   d=crf / net if ok else np.nan, se=np.nan, verdict=v)
    else:
        raise ValueError(f"unknown claim kind {claim.kind!r}")
    return row


def _fmt(values) -> str:
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return "-"
    if values.size == 1:
        return f"{values[0]:.4f} (1 seed)"
    return f"{values.mean():.4f} ± {values.std(ddof=1):.4f} (n={values.size}, {values.min():.4f}-{values.max():.4f})"


def claims_ledger(df: pd.DataFrame, groups: dict, benchmark: dict | None = None, claims=CLAIMS) -> pd.DataFrame:
    """One row per claim: what we measured (A, B as mean ± std over seeds, with the range), the
    difference ``d`` of the means, its standard error and the verdict of :data:`VERDICT_RULES`.
    ``benchmark``: the content of ``results/benchmarks/evaluate_cpu.json`` (claim C20)."""
    return pd.DataFrame([_claim_row(df, c, groups, benchmark) for c in claims])


# --------------------------------------------------------------------------- Fig. 4, Table 1


def kernel_sizes_frame(df: pd.DataFrame, widths: dict | None = None, groups: dict | None = None,
                       kernel_sizes: str = "3,5,7") -> pd.DataFrame:
    """Long format: one row per (AAF run seed, class) with ``effective_kernel_size`` (edge term),
    the class's ``group`` and structure ``width_px`` when given."""
    sel = _select(df, "val-source", None, ["aaf"], kernel_sizes)
    sel = sel[sel["base"] == "pspnet"]
    names = class_names(df, "effective_kernel_size")
    group_of = {n: g for g, members in (groups or {}).items() for n in members}
    rows = []
    for _, r in sel.iterrows():
        for n in names:
            rows.append({"seed": r["seed"], "class": n, "effective_kernel_size": r[f"effective_kernel_size/{n}"],
                         "group": group_of.get(n, r.get("group")), "width_px": (widths or {}).get(n)})
    return pd.DataFrame(rows, columns=["seed", "class", "effective_kernel_size", "group", "width_px"])


def run_time_table(df: pd.DataFrame) -> pd.DataFrame:
    """Table 1's measurable columns: inference time per image (network, and the CRF's extra), and
    mIoU, for PSPNet, PSPNet + CRF, GAN and AAF (means over the seeds found)."""
    rows = []
    for method, tag in (("baseline", "val-source"), ("crf", "val-source-crf"), ("gan", "val-source"),
                        ("aaf", "val-source")):
        sel = _select(df, tag, "pspnet", [method])
        if sel.empty:
            continue
        rows.append({"method": method_label("pspnet", method),
                     "network ms/image": 1000 * sel["inference_seconds_per_image"].mean(),
                     "extra ms/image": 1000 * sel["crf_seconds_per_image"].astype(float).fillna(0).mean(),
                     "mIoU": 100 * sel["miou"].mean(), "seeds": len(sel)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- figures


def read_train_log(run: str | Path) -> pd.DataFrame:
    """The training log of a run (``train_log.jsonl``) as a DataFrame, one row per logged step."""
    path = Path(run) / "train_log.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    return pd.DataFrame([json.loads(line) for line in path.read_text().splitlines() if line.strip()])


def plot_training(log: pd.DataFrame, class_names_: list[str] | None = None, window: int = 25):
    """Loss curves (total, cross-entropy, auxiliary; running mean over ``window`` steps), the
    learning rate and, for AAF, the effective kernel size of every class over the steps."""
    import matplotlib.pyplot as plt

    has_aaf = "effective_kernel_size" in log.columns and log["effective_kernel_size"].notna().any()
    fig, axes = plt.subplots(1, 3 if has_aaf else 2, figsize=(13 if has_aaf else 9, 3.2))
    smooth = log[["loss", "ce", "aux"]].rolling(window, min_periods=1).mean()
    for col in ("loss", "ce", "aux"):
        axes[0].plot(log["step"], smooth[col], label=col)
    axes[0].set(xlabel="step", ylabel="loss", title=f"losses (running mean of {window})")
    axes[0].legend()
    axes[1].plot(log["step"], log["lr"])
    axes[1].set(xlabel="step", ylabel="learning rate", title="poly schedule (backbone)")
    if has_aaf:
        rows = log[log["effective_kernel_size"].notna()]
        values = np.array(rows["effective_kernel_size"].tolist())
        for c in range(values.shape[1]):
            label = class_names_[c] if class_names_ else str(c)
            axes[2].plot(rows["step"], values[:, c], label=label)
        axes[2].set(xlabel="step", ylabel="effective kernel size", title="AAF edge term: Σ_k w_k·k")
        axes[2].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def _load_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def plot_predictions(dataset, prediction_dirs: dict[str, Path], ids: list[str] | None = None, max_images: int = 4):
    """A grid: image, ground truth, then one column per entry of ``prediction_dirs`` (label ->
    directory of palette PNGs ``<id>.png``), for the ids found in every directory (Fig. 5)."""
    import matplotlib.pyplot as plt
    from aafcore.data import colorize

    available = [set(p.stem for p in Path(d).glob("*.png")) for d in prediction_dirs.values()]
    common = sorted(set.intersection(*available)) if available else []
    ids = [i for i in (ids or common) if i in common][:max_images]
    if not ids:
        raise FileNotFoundError("no prediction PNGs common to " + ", ".join(str(d) for d in prediction_dirs.values()))
    index = {ident: i for i, ident in enumerate(dataset.ids)}
    cols = 2 + len(prediction_dirs)
    fig, axes = plt.subplots(len(ids), cols, figsize=(2.1 * cols, 2.1 * len(ids)), squeeze=False)
    for r, ident in enumerate(ids):
        image, label, _ = dataset.load_raw(index[ident])
        panels = [("image", image), ("ground truth", colorize(label, dataset.palette))]
        panels += [(name, _load_png(Path(d) / f"{ident}.png")) for name, d in prediction_dirs.items()]
        for c, (title, picture) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(picture, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=9)
        axes[r, 0].set_ylabel(ident, fontsize=8)
    fig.tight_layout()
    return fig


def plot_kernel_sizes(frame: pd.DataFrame, order: list[str]):
    """Fig. 4: effective kernel size of the edge term per class (mean over seeds, one dot per seed),
    classes in ``order`` (by structure width), coloured by group."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if frame.empty:
        raise FileNotFoundError("no AAF run with effective kernel sizes in the results")
    fig, ax = plt.subplots(figsize=(7, 3.2))
    sns.barplot(data=frame, x="class", y="effective_kernel_size", hue="group", order=order,
                errorbar="sd", dodge=False, ax=ax, alpha=0.8)
    sns.stripplot(data=frame, x="class", y="effective_kernel_size", order=order, color="black", size=3, ax=ax)
    ax.set(xlabel="class (ordered by typical structure width)", ylabel="effective kernel size $k^e_c$",
           ylim=(3, 7))
    ax.axhline(5, color="grey", lw=0.5, ls=":")
    fig.tight_layout()
    return fig
