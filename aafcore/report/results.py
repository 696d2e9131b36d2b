"""Reading what the book shows: the paper's tables, our results tree and the benchmark files.

Data flow::

    results/<profile>/<dataset>/<run>/metrics.json           (aaf train: val, single scale)
    results/<profile>/<dataset>/<run>/eval/<tag>/metrics.json (aaf evaluate: other splits/modes)
        -> load_results() -> one row per (run, evaluation)
    results/benchmarks/<name>.json                            (benchmarks/*.py)
        -> load_benchmark()

The paper's numbers come from the project's own copy of its tables (``aafcore/paper_tables``).
"""

from __future__ import annotations

import json
import os
import warnings
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd

from aafcore.runs import read_json, same_training

# aafcore.config and aafcore.datasets are imported inside class_info and prediction_dirs: they
# import torch (seconds), and the tables of the book need nothing but pandas.

__all__ = ["PAPER_TABLES", "METHOD_ORDER", "at_project_root", "paper_table", "paper_caption", "method_label",
           "base_label", "dataset_label", "load_results", "describe_results", "class_info", "class_names",
           "select_rows", "paper_view", "benchmark_path", "load_benchmark", "prediction_dirs", "read_train_log",
           "benchmark_note", "boundary_note"]

PAPER_TABLES = Path(__file__).resolve().parent.parent / "paper_tables"
PAPER_FRACTION_TABLES = (8, 9)     # the tables the paper prints as 0-1 (boundary recall), not in percent
METHOD_ORDER = ["baseline", "crf", "gan", "emb", "affinity", "aaf", "aaf_frozen", "aaf_min"]
_LABELS = {"crf": "CRF", "gan": "GAN", "emb": "Emb.", "affinity": "Affinity", "aaf": "AAF",
           "aaf_frozen": "AAF, frozen weights", "aaf_min": "AAF, minimised weights"}
_AAF_METHODS = ("aaf", "aaf_frozen", "aaf_min")   # aafcore.objectives.AAF_METHODS (imports torch)
_BASE_LABELS = {"fcn": "FCN", "pspnet": "PSPNet"}
_DATASET_LABELS = {"voc2012": "VOC", "cityscapes": "Cityscapes"}
_BOOKKEEPING = ["table_id", "dataset", "split", "metric"]
_PROVENANCE_COLUMNS = ("inference_seconds_per_image", "crf_seconds_per_image", "median_step_seconds",
                       "wall_seconds", "train_seconds", "git_commit")


def at_project_root() -> Path:
    """Make the repository root the working directory (notebooks use paths like ``results/``
    relative to it, whichever directory Jupyter, papermill or nbval starts them in); returns it."""
    root = Path(__file__).resolve().parent.parent.parent
    if (root / "pyproject.toml").is_file() and (root / "aafcore").is_dir():
        os.chdir(root)
    return Path.cwd()


# --------------------------------------------------------------------------- the paper's tables


def _read_paper(number: int) -> pd.DataFrame:
    """Table ``number`` as strings, exactly as printed (its TSV under ``aafcore/paper_tables``)."""
    path = PAPER_TABLES / f"table{number}.tsv"
    if not path.is_file():
        raise ValueError(f"the paper has no table {number} (tables 1-11; {path} not found)")
    header = path.read_text().splitlines()[0].split("\t")
    if header[0] == "table":
        header[0] = "table_id"      # VOC has a class named "table"
    header = [h.strip("$") for h in header]   # Table 10's "$k = 3$": no LaTeX in an HTML table header
    return pd.read_csv(path, sep="\t", dtype=str, header=0, names=header, keep_default_na=False)


def paper_table(number: int, bookkeeping: bool = True) -> pd.DataFrame:
    """Table ``number`` (1-11) of the paper as printed, with the columns ``table_id``, ``dataset``,
    ``split``, ``metric``, ``base`` in front (see ``aafcore/paper_tables/README.md``); numeric
    columns as numbers.

    ``bookkeeping=False`` drops ``table_id``, ``dataset``, ``split`` and ``metric`` (the book
    shows them in the caption, :func:`paper_caption`).
    """
    df = _read_paper(number)
    for col in df.columns:
        converted = pd.to_numeric(df[col], errors="coerce")
        if converted.notna().all():
            df[col] = converted
    return df if bookkeeping else df.drop(columns=[c for c in _BOOKKEEPING if c in df.columns])


def _percent(printed: str) -> str:
    """``".606"`` -> ``"60.6"``: a value printed as a fraction, in percent with the same precision
    (two decimals fewer); exact (decimal arithmetic), no rounding."""
    value = Decimal(printed).scaleb(2)
    decimals = max(-value.as_tuple().exponent, 0)
    return f"{value:.{decimals}f}"


def paper_view(number: int, max_columns: int = 12, percent: bool = True) -> pd.DataFrame:
    """Table ``number`` as the book shows it: every value as the paper prints it (strings: no
    digit added or lost), the row labels (base, method; Table 10's kernel-size set) as the index,
    and a per-class table with more than ``max_columns`` numbers transposed (one row per class,
    one column per method) so that it fits the page.  ``percent``: a table the paper prints as
    0-1 (:data:`PAPER_FRACTION_TABLES`, boundary recall ``.606``) is shown in percent with the
    same precision (``60.6``), as every table of the book is."""
    df = _read_paper(number)
    if percent and number in PAPER_FRACTION_TABLES:
        for c in df.columns:
            if c not in _BOOKKEEPING and c != "base" and pd.to_numeric(df[c], errors="coerce").notna().all():
                df[c] = df[c].map(_percent)
    df = df.drop(columns=[c for c in _BOOKKEEPING if c in df.columns]).rename(columns={"Method": "method"})
    sizes = [c for c in df.columns if c.startswith("k = ")]
    if sizes:   # Table 10: the kernel-size set of each row, from its check marks
        df.insert(df.columns.get_loc(sizes[0]), "kernel sizes", [
            "{" + ", ".join(c[4:] for c in sizes if row[c] == "✓") + "}" for _, row in df.iterrows()])
        df = df.drop(columns=sizes)
    if "base" in df.columns:   # FCN's rows, then PSPNet's (the paper lists the bases interleaved)
        df = df.sort_values("base", kind="stable", key=lambda b: b.map({"FCN": 0, "PSPNet": 1}).fillna(2))
    numeric = [c for c in df.columns if pd.to_numeric(df[c], errors="coerce").notna().all()]
    labels = [c for c in df.columns if c not in numeric][:2] if len(numeric) > max_columns else \
        [c for c in ("base", "method", "kernel sizes") if c in df.columns]
    df = df.set_index(labels)
    return df.T if len(numeric) > max_columns else df


def paper_caption(number: int, unit: str | None = None) -> str:
    """``**Table 2** (voc2012, val, IoU %)``: the table's dataset, split and ``unit`` (markdown)."""
    t = paper_table(number)
    parts = [str(t[c].iloc[0]) for c in ("dataset", "split") if c in t.columns] + ([unit] if unit else [])
    return f"**Table {number}** ({', '.join(parts)})"


def dataset_label(dataset: str) -> str:
    """The short name the book gives a paper dataset: ``voc2012`` -> ``VOC``."""
    return _DATASET_LABELS.get(dataset, dataset)


# --------------------------------------------------------------------------- our results


def base_label(base: str) -> str:
    """The paper's name of a base network: ``pspnet`` -> ``PSPNet``."""
    return _BASE_LABELS.get(base, base)


def method_label(base: str, method: str) -> str:
    """The paper's row label: the base's name for the baseline, else the method's (``AAF``)."""
    return base_label(base) if method == "baseline" else _LABELS.get(method, method)


def _flatten(result: dict, run_dir: Path, tag: str) -> dict:
    cfg = result.get("config", {})
    ev = result.get("evaluation", {})
    inference = ev.get("inference") or {}
    crf = inference.get("crf") is not None
    method = "crf" if crf and cfg.get("method") == "baseline" else cfg.get("method")
    row = {"run": run_dir.name, "tag": tag, "base": cfg.get("base"),
           "method": method, "trained_method": cfg.get("method"), "seed": cfg.get("seed"),
           "kernel_sizes": ",".join(str(k) for k in cfg.get("kernel_sizes", [])) if cfg.get("method") in _AAF_METHODS else "",
           "weight_by": cfg.get("weight_by", "label") if cfg.get("method") in _AAF_METHODS else "",
           "split": ev.get("split"), "domain": ev.get("domain"), "mode": ev.get("mode"),
           "path": str(run_dir / ("metrics.json" if tag == "train" else f"eval/{tag}/metrics.json"))}
    prov = result.get("provenance", {})
    for key in _PROVENANCE_COLUMNS:
        row[key] = prov.get(key)
    # the commit the network was trained at: an evaluation records it under provenance.training (its
    # own git_commit is when it was evaluated); a run's own metrics.json is the training's
    row["training_git_commit"] = (prov["training"] or {}).get("git_commit") if "training" in prov else prov.get("git_commit")
    names = result.get("class_names", [])
    for key, value in result.get("metrics", {}).items():
        if isinstance(value, list):
            for name, v in zip(names, value):
                row[f"{key}/{name}"] = np.nan if v is None else float(v)
        else:
            row[key] = np.nan if value is None else float(value)
    if result.get("aaf"):
        for name, k in zip(names, result["aaf"].get("effective_kernel_size", [])):
            row[f"effective_kernel_size/{name}"] = float(k)
    return row


def load_results(profile: str = "cpu", dataset: str = "synthetic",
                 results_root: str | Path = "results") -> pd.DataFrame:
    """One row per evaluation of every run under ``results/<profile>/<dataset>/``.

    ``tag`` is the evaluation (``val-source``, ``test-source-ms``, ``val-shifted``,
    ``val-source-crf``, ...); a run's own ``metrics.json`` (the val pass of ``aaf train``) is the
    ``val-source`` row unless ``eval/val-source/`` exists (same code, same numbers, written later
    for runs trained before every metric existed).  ``method`` is ``crf`` for a baseline evaluated
    with the dense CRF.  Per-class values are columns ``<metric>/<class>``.

    An evaluation of an earlier training of the folder (:func:`aafcore.runs.same_training`) is
    ignored with a warning; a run trained with overrides of its profile's config (its folder has a
    ``-c<hash>`` suffix) is not one of the profile's runs and is left out.
    """
    root = Path(results_root) / profile / dataset
    if not root.is_dir():
        raise FileNotFoundError(f"no results under {root} (run `aaf reproduce --profile {profile}`)")
    rows = []
    for run in sorted(p for p in root.iterdir() if p.is_dir()):
        own = run / "metrics.json"
        trained = read_json(own) if own.is_file() else None
        if trained is not None and (not isinstance(trained, dict) or trained.get("overrides")):
            continue   # not a result, or a run with overrides (its own folder): not one of the profile's runs
        evals = {}
        for path in sorted(run.glob("eval/*/metrics.json")):
            result = read_json(path)
            if trained is not None and not same_training(result, trained):
                warnings.warn(f"{path} evaluates an earlier training of {run} (not its current checkpoint): "
                              f"ignored; run the evaluation again", stacklevel=2)
                continue
            evals[path.parent.name] = (path, result)
        if trained is not None and "val-source" not in evals:
            rows.append(_flatten(trained, run, "val-source"))
            rows[-1]["path"] = str(own)
        for tag, (path, result) in evals.items():
            rows.append(_flatten(result, run, tag))
    if not rows:
        raise FileNotFoundError(f"no metrics.json under {root}")
    return pd.DataFrame(rows)


def describe_results(df: pd.DataFrame, profile: str, dataset: str, results_root: str | Path = "results") -> str:
    """``16 runs, 41 evaluations under results/cpu/synthetic/``: what :func:`load_results` found."""
    return f"{df['run'].nunique()} runs, {len(df)} evaluations under {results_root}/{profile}/{dataset}/"


def class_info(profile: str = "cpu", dataset: str = "synthetic", results_root: str | Path = "results") -> dict:
    """Classes and setting of the results: ``names``, ``groups`` (``{"thin": [...], "large": [...]}``),
    for the synthetic benchmark each class's typical structure ``widths`` in pixels (from its spec)
    and its ``benchmark`` version (``"v1"``, ``"v2"``; None for a real dataset), and the runs'
    ``image_size`` (px, None when unknown) and training ``steps`` (of the first run found)."""
    root = Path(results_root) / profile / dataset
    first = next(iter(sorted(root.glob("*/metrics.json"))), None)
    if first is None:
        raise FileNotFoundError(f"no run under {root}")
    result = json.loads(first.read_text())
    names = result["class_names"]
    groups = {g: [names[i] for i in idx] for g, idx in result.get("class_groups", {}).items()}
    widths: dict[str, float] = {}
    spec = result.get("provenance", {}).get("data", {}).get("spec")
    benchmark = None
    if dataset == "synthetic" and spec and "thin_width" in spec:   # benchmark v1 (v2's specs have no thin_width)
        from aafcore.datasets import synthetic_class_table   # imports torch: only when needed

        widths = {c["name"]: c["width_px"] for c in synthetic_class_table(spec["image_size"], spec["thin_width"])}
        benchmark = "v1"
    elif dataset == "synthetic" and spec:
        from aafcore.datasets import synthetic_meta, SYNTHETIC_PROFILES   # imports torch: only when needed

        meta = next((m for m in map(synthetic_meta, SYNTHETIC_PROFILES.values()) if m["spec"] == spec), None)
        if meta is not None:
            widths = {c["name"]: c["width_px"] for c in meta["classes"]}
        benchmark = "v2"
    return {"names": names, "groups": groups, "widths": widths, "benchmark": benchmark,
            "image_size": (spec or {}).get("image_size"), "steps": result.get("config", {}).get("steps")}


def benchmark_note(info: dict, profile: str, dataset: str = "synthetic", results_root: str | Path = "results") -> str:
    """The markdown paragraph under a results page's title: which benchmark and runs the page reads
    (:func:`class_info`'s ``info``), and how to read its tables against the paper's."""
    where = f"`{Path(results_root) / profile / dataset}/`"
    groups = ", ".join(f"{len(m)} {g} ({', '.join(m)})" for g, m in info["groups"].items())
    size = f"{info['image_size']} px images, " if info.get("image_size") else ""
    setting = f"{size}{len(info['names'])} classes: {groups}; every run {info['steps']} steps from scratch"
    if info.get("benchmark") == "v2":
        head = (f"**Benchmark v2, the study** ({where}, `protocol/study.yaml`): {setting}. The paired "
                "statistics and verdicts of the study are on its results and claims page.")
    elif info.get("benchmark") == "v1":
        head = (f"**Benchmark v1, the `{profile}` profile** ({where}): {setting}. An appendix: the book's main "
                "results are on benchmark v2 (the study), whose runs are longer and whose structures span "
                "more scales.")
    else:
        head = f"**{dataset_label(dataset)}, the `{profile}` profile** ({where}): {len(info['names'])} classes."
    return (head + "\n\n*Reading these tables.* Our classes are not the paper's, so class columns cannot be "
            "compared with the paper's; what compares is the **gain of each method over its base network**. "
            "Values are means over the seeds found (`seeds`); `± std` is the standard deviation of the mean "
            "column over seeds.")


def boundary_note(df: pd.DataFrame, info: dict, tolerance: float = 0.0075) -> str:
    """One markdown sentence on the boundary tolerance of these results: the paper's ``tolerance``
    (a fraction of the image diagonal) in pixels and in logit cells (output stride 8) on our images
    beside a VOC image's (500 x 375 px), and the one-cell set when the evaluations have it."""
    voc = tolerance * float(np.hypot(500, 375))
    size = info.get("image_size")
    if not size:
        return f"The boundary tolerance is {tolerance} of the image diagonal ({voc:.1f} px on a VOC image)."
    px = tolerance * float(np.hypot(size, size))
    text = (f"The paper's tolerance, {tolerance} of the image diagonal, is {px:.2f} px on our {size} px images "
            f"({px / 8:.2f} of a logit cell at output stride 8) against {voc:.1f} px on a VOC image"
            + (", so our recall values are much lower than the paper's: compare the gains." if px / 8 < 0.25
               else "; compare the gains."))
    if "mean_boundary_recall_cell" in df.columns and df["mean_boundary_recall_cell"].notna().any():
        cell = df["boundary_tolerance_px"].dropna() if "boundary_tolerance_px" in df.columns else pd.Series(dtype=float)
        cell_px = f"{cell.iloc[0]:g} px" if len(cell) else "one logit cell"
        text += (f" The second set is the BF score within one logit cell ({cell_px}): a boundary pixel counts "
                 "when the other map has one of its class that close, whatever the matching.")
    return text


def class_names(df: pd.DataFrame, metric: str = "iou") -> list[str]:
    """Class names in the order of the results' columns ``<metric>/<class>``."""
    return [c.split("/", 1)[1] for c in df.columns if c.startswith(f"{metric}/")]


def select_rows(df: pd.DataFrame, tag: str, base: str | None = None, methods=None,
                kernel_sizes: str = "3,5,7", weight_by: str = "label") -> pd.DataFrame:
    """The rows of evaluation ``tag`` (of ``base`` and ``methods`` when given); AAF-family runs
    only with the kernel-size set ``kernel_sizes`` and the weighting ``weight_by`` (the study's
    control (c) weights by class channel; the other methods have neither)."""
    sel = df[df["tag"] == tag]
    if base is not None:
        sel = sel[sel["base"] == base]
    if methods is not None:
        sel = sel[sel["method"].isin(methods)]
    sel = sel[(sel["kernel_sizes"] == "") | (sel["kernel_sizes"] == kernel_sizes)]
    if "weight_by" in sel.columns:
        sel = sel[(sel["weight_by"].fillna("") == "") | (sel["weight_by"] == weight_by)]
    return sel


# --------------------------------------------------------------------------- benchmarks, runs


def benchmark_path(results_root: str | Path, name: str) -> Path:
    """``<results_root>/benchmarks/<name>.json``, the file ``benchmarks/<script>.py`` wrote."""
    return Path(results_root, "benchmarks", name if name.endswith(".json") else f"{name}.json")


def load_benchmark(results_root: str | Path, name: str) -> dict | None:
    """The content of :func:`benchmark_path` (e.g. ``name="evaluate_cpu"``), None when it is missing."""
    path = benchmark_path(results_root, name)
    return json.loads(path.read_text()) if path.is_file() else None


def prediction_dirs(profile: str, dataset: str, results_root: str | Path = "results",
                    methods=("baseline", "affinity", "aaf"), base: str = "pspnet", seed: int = 0) -> dict[str, Path]:
    """Row label -> folder of the val predictions (palette PNGs) of each method's run (Fig. 5).

    The run is :func:`aafcore.config.run_dir` of the profile's config (kernel sizes at the
    profile's); its evaluation's ``eval/val-source/predictions`` when it exists (every metric,
    newer code), else the ``predictions`` that ``aaf train`` wrote.
    """
    from aafcore.config import profile_config, run_dir   # imports torch: only when needed

    dirs = {}
    for method in methods:
        run = run_dir(profile_config(profile, dataset=dataset, base=base, method=method, seed=seed), results_root)
        evaluated = run / "eval" / "val-source" / "predictions"
        dirs[method_label(base, method)] = evaluated if evaluated.is_dir() else run / "predictions"
    return dirs


def read_train_log(run: str | Path) -> pd.DataFrame:
    """The training log of a run (``train_log.jsonl``) as a DataFrame, one row per logged step."""
    path = Path(run) / "train_log.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    return pd.DataFrame([json.loads(line) for line in path.read_text().splitlines() if line.strip()])
