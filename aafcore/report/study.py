"""What the book shows of the study before its comparisons: the protocol, the benchmark's geometry
and the tuning (learning rate, length, CRF), all read from committed files under
``results/study/synthetic/`` and ``protocol/study.yaml``.  Torch-free.

* :func:`width_table` / :func:`edge_share_table` -- ``benchmark-statistics.json``
  (``protocol/benchmark_stats.py``): per-class width quantiles in logit cells, and the share of
  edge pairs per field size ``k`` (with the k = 7 / k = 3 ratio, the adversary's starting signal);
* :func:`tuning_curves` / :func:`plot_tuning_curves` -- the tuning runs' learning curves on the
  tuning split (``monitor_log.jsonl``);
* :func:`crf_grid_table` -- ``crf-grid.json`` of the tuning baseline (``protocol/run_crf_grid.py``);
* :func:`protocol_summary` -- the protocol's version, status, commit and amendments;
* :func:`compute_budget` / :func:`budget_text` -- how long the study takes, from its landed runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from aafcore.report.protocol import Protocol, protocol_commit, protocol_dirty
from aafcore.report.results import load_benchmark
from aafcore.report.tables import method_table, table
from aafcore.runs import read_json

__all__ = ["STUDY_ROOT", "benchmark_statistics_path", "width_table", "edge_share_table", "tuning_curves",
           "plot_tuning_curves", "crf_grid_table", "protocol_summary", "README_START", "README_END",
           "readme_summary", "readme_block", "compute_budget", "budget_text"]

STUDY_ROOT = Path("results") / "study" / "synthetic"


def benchmark_statistics_path(results_root: str | Path = "results") -> Path:
    """Where ``protocol/benchmark_stats.py`` writes the benchmark's statistics."""
    return Path(results_root) / "study" / "synthetic" / "benchmark-statistics.json"


def _stats(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `python protocol/benchmark_stats.py` first")
    return read_json(path)


def width_table(path: str | Path, groups: dict[str, list[str]] | None = None) -> pd.DataFrame:
    """Per-class structure widths in logit cells (index: class): the ridge-weighted quantiles
    ``q05`` ... ``q95``, the mean and the shares of the ridge at least 1, 3 and 10 cells wide,
    with the class's ``group`` (``groups``: group -> class names) in front when given."""
    df = pd.DataFrame(_stats(path)["widths"]).set_index("class").drop(columns=["index", "ridge_points"])
    if groups:
        member = {name: g for g, names in groups.items() for name in names}
        df.insert(0, "group", [member.get(c, "") for c in df.index])
    return df


def edge_share_table(path: str | Path, groups: dict[str, list[str]] | None = None) -> pd.DataFrame:
    """The share of edge pairs (%) per class (rows) and field size (columns ``k=3``, ``k=5``,
    ``k=7``), and ``k=7 / k=3``: how much more often a 7 x 7 field than a 3 x 3 one sees an edge
    for that class -- the gradient the adversary starts from, before any learning."""
    records = pd.DataFrame(_stats(path)["edge_pairs"])
    table = records.pivot(index="class", columns="k", values="share").reindex(records["class"].unique())
    ratio = table[table.columns.max()] / table[table.columns.min()]
    table = 100 * table
    table.columns = [f"k={k}" for k in table.columns]
    table["k=7 / k=3"] = ratio
    if groups:
        member = {name: g for g, names in groups.items() for name in names}
        table.insert(0, "group", [member.get(c, "") for c in table.index])
    return table


def tuning_curves(results_root: str | Path = "results", tuning_seeds=(100,)) -> pd.DataFrame:
    """The tuning runs' learning curves, one row per point: ``run``, ``seed``, ``lr``, ``steps``
    (the run's length), ``step``, ``miou`` (tuning split, points)."""
    rows = []
    root = Path(results_root) / "study" / "synthetic"
    for seed in tuning_seeds:
        for run in sorted(root.glob(f"pspnet-baseline-s{seed}-c*")):
            if not (run / "metrics.json").is_file() or not (run / "monitor_log.jsonl").is_file():
                continue
            cfg = read_json(run / "metrics.json")["config"]
            for line in (run / "monitor_log.jsonl").read_text().splitlines():
                if line.strip():
                    point = json.loads(line)
                    rows.append({"run": run.name, "seed": seed, "lr": float(cfg["lr"]), "steps": int(cfg["steps"]),
                                 "step": int(point["step"]), "miou": 100 * float(point["miou"])})
    return pd.DataFrame(rows, columns=["run", "seed", "lr", "steps", "step", "miou"])


def plot_tuning_curves(curves: pd.DataFrame, lr_steps: int, lr: float, lengths, last_fraction: float = 0.2):
    """Two panels of tuning mIoU against steps: the learning rates (runs of ``lr_steps`` steps),
    and the candidate ``lengths`` at the chosen rate ``lr``, the last ``last_fraction`` of each
    run shaded (the part the length rule measures)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
    for rate, part in curves[curves.steps == lr_steps].groupby("lr"):
        axes[0].plot(part["step"], part["miou"], marker=".", label=f"lr {rate:g}")
    for steps in sorted(lengths):
        part = curves[(curves.lr == lr) & (curves.steps == steps)]
        if part.empty:
            continue
        line, = axes[1].plot(part["step"], part["miou"], marker=".", label=f"{steps} steps")
        axes[1].axvspan((1 - last_fraction) * steps, steps, color=line.get_color(), alpha=0.1)
    axes[0].set_title(f"learning rates ({lr_steps} steps)")
    axes[1].set_title(f"lengths at lr {lr:g} (last {last_fraction:.0%} shaded)")
    for ax in axes:
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("tuning-split mIoU (%)")
    fig.tight_layout()
    return fig


def crf_grid_table(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """The CRF grid (rows ``bi_w``, columns ``bi_xy_std``, tuning mIoU in points) and the grid's
    record (``no_crf_miou``, ``chosen``, ``chosen_miou``, ``images``, ``run``, ...)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `python protocol/run_crf_grid.py` first")
    grid = read_json(path)
    cells = pd.DataFrame(grid["cells"])
    keys = list(grid["grid"])
    table = cells.pivot(index=keys[0], columns=keys[1], values="miou") if len(keys) == 2 else cells
    return table, grid


def protocol_summary(protocol: Protocol) -> dict:
    """``version``, ``status``, ``commit`` (the last commit of the file; None outside git),
    ``dirty`` and ``amendments`` (the file's list, possibly empty)."""
    import yaml

    data = yaml.safe_load(Path(protocol.path).read_text())
    return {"version": protocol.version, "status": protocol.status, "commit": protocol_commit(protocol.path),
            "dirty": protocol_dirty(protocol.path), "amendments": data.get("amendments") or []}


# --------------------------------------------------------------------------- the study's results


def study_progress(df: pd.DataFrame, protocol: Protocol) -> pd.DataFrame:
    """Per run group of the protocol: its seeds, how many of them are trained (a ``train`` or
    ``val-source`` row in ``df``, the study's :func:`~aafcore.report.results.load_results`) and
    which are missing."""
    rows = []
    for g in protocol.runs:
        names = {f"{g.base}-{g.method}{_suffix(g)}-s{s}": s for s in g.seeds}
        done = sorted(s for name, s in names.items() if not df.empty and (df["run"] == name).any())
        rows.append({"group": g.id, "seeds": len(g.seeds), "trained": len(done),
                     "missing": ", ".join(str(s) for s in g.seeds if s not in done)})
    return pd.DataFrame(rows)


def _suffix(group) -> str:
    """The run-name part of a group's AAF settings (``aafcore.config.run_name``)."""
    if group.kernel_sizes is None:
        return ""
    ks = "" if tuple(group.kernel_sizes) == (3, 5, 7) else "-k" + "_".join(str(k) for k in group.kernel_sizes)
    return ks + ("-channel" if group.weight_by == "channel" else "")


def group_means(df: pd.DataFrame, protocol: Protocol, metric: str = "miou", tag: str = "val-source") -> pd.DataFrame:
    """Per run group: ``n`` seeds evaluated at ``tag`` and the mean, standard deviation, min and max
    of ``metric`` over them (points for fractions)."""
    rows = []
    for g in protocol.runs:
        names = [f"{g.base}-{g.method}{_suffix(g)}-s{s}" for s in g.seeds]
        sel = df[df["run"].isin(names) & (df["tag"] == tag)] if not df.empty else df
        values = 100 * sel[metric].astype(float) if len(sel) else pd.Series(dtype=float)
        rows.append({"group": g.id, "n": int(values.notna().sum()), "mean": values.mean(), "std": values.std(),
                     "min": values.min(), "max": values.max()})
    return pd.DataFrame(rows).set_index("group")


def geometry_kernel_sizes(path: str | Path) -> pd.Series:
    """The effective kernel size that label geometry alone predicts per class, before training:
    ``sum_k k * share_k / sum_k share_k`` with ``share_k`` the class's edge-pair share at size ``k``
    (:func:`edge_share_table`).  At initialisation the predictions are nearly uniform, so the
    edge term of size ``k`` for class ``c`` is about ``margin x`` its share of edge pairs and the
    adversary's first gradient on ``w_eck`` is proportional to that share: the sizes that see more
    edges gain weight first."""
    records = pd.DataFrame(_stats(path)["edge_pairs"])
    weighted = records.assign(ks=records["k"] * records["share"]).groupby("class", sort=False)
    return (weighted["ks"].sum() / weighted["share"].sum()).rename("predicted")


def kernel_size_comparison(df: pd.DataFrame, path: str | Path, groups: dict[str, list[str]]) -> pd.DataFrame:
    """Fig. 4 beside what the labels predict: per class (thinnest median width first), its group,
    median width in logit cells, the k=7/k=3 edge-share ratio, the geometry's predicted size
    (:func:`geometry_kernel_sizes`) and the learned effective kernel size of the edge term over
    the PSPNet AAF runs (kernel sizes 3, 5, 7, weighting by label): ``learned_mean``,
    ``learned_std``, ``n``."""
    widths = width_table(path, groups)
    shares = edge_share_table(path, groups)
    predicted = geometry_kernel_sizes(path)
    aaf = df[(df.get("method") == "aaf") & (df.get("base") == "pspnet") & (df.get("kernel_sizes") == "3,5,7")
             & (df.get("weight_by") == "label") & (df.get("tag") == "val-source")] if not df.empty else df
    rows = []
    for name in widths.sort_values("q50").index:
        column = f"effective_kernel_size/{name}"
        learned = aaf[column].astype(float) if column in getattr(aaf, "columns", []) else pd.Series(dtype=float)
        rows.append({"class": name, "group": widths.at[name, "group"], "median_width_cells": widths.at[name, "q50"],
                     "k7_over_k3": shares.at[name, "k=7 / k=3"], "predicted": predicted[name],
                     "learned_mean": learned.mean(), "learned_std": learned.std(), "n": int(learned.notna().sum())})
    return pd.DataFrame(rows).set_index("class")


# kernel_size_comparison's columns -> the book's headers
_COMPARISON_HEADERS = {"median_width_cells": "median width (cells)", "k7_over_k3": "edge pairs k=7 / k=3",
                       "predicted": "predicted size (px)", "learned_mean": "learned size (px)",
                       "learned_std": "± std", "n": "seeds"}


def kernel_size_comparison_table(comparison: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """:func:`kernel_size_comparison` as the book shows it: the same rows and values, headers in
    words (``median width (cells)``, ``edge pairs k=7 / k=3``, ``predicted size (px)``, ``learned
    size (px)``, ``± std``, ``seeds``), ``digits`` decimals and "–" where no AAF run has the class
    (:func:`~aafcore.report.tables.table`)."""
    return table(comparison.rename(columns=_COMPARISON_HEADERS), digits)

# --------------------------------------------------------------------------- the README's results

README_START, README_END = "<!-- study-results: written by protocol/readme_results.py -->", "<!-- /study-results -->"
# the README's summary columns: (header, metric of method_table, evaluation, column of its row, digits)
_SUMMARY = (("mIoU", "iou", "val-source", "mean", 1), ("large", "iou", "val-source", "large", 1),
            ("mid", "iou", "val-source", "mid", 1), ("thin", "iou", "val-source", "thin", 1),
            ("instance mIoU", "instance_iou", "val-source", "mean", 1),
            ("boundary F, 1 cell", "boundary_f_cell", "val-source", "mean", 1),
            ("test mIoU (ms+flip)", "iou", "test-source-ms", "mean", 1),
            ("shifted mIoU", "iou", "val-shifted", "mean", 1))
_KEY_CLAIMS = (("C2", "AAF − baseline"), ("C1", "Affinity − baseline"), ("C3", "AAF − Affinity"),
               ("K1", "AAF − AAF with frozen size weights (control a)"))


def readme_summary(df: pd.DataFrame, protocol: Protocol, ledger: pd.DataFrame | None, budget: dict | None = None) -> str:
    """The README's results block (markdown, between :data:`README_START` and :data:`README_END`):
    how much of the study has landed, the PSPNet baseline, Affinity and AAF on the summary columns
    (mean ± standard deviation over the seeds found, ``n`` their count; each column from the
    evaluation it names), and the four key paired differences of ``ledger`` (the study's
    :func:`~aafcore.report.ledger.study_ledger`) with their corrected intervals and verdicts; with
    ``budget`` (:func:`compute_budget`), how long the whole study takes (:func:`budget_text`)."""
    progress = study_progress(df, protocol)
    done, total = int(progress.trained.sum()), int(progress.seeds.sum())
    lines = [README_START, "",
             f"The study, `results/study/synthetic/` ({done} of its {total} trainings landed"
             + (")." if done == total else "; provisional until all have).")
             + " PSPNet, val split unless stated, mean ± standard deviation over seeds (n):", ""]
    header = ["PSPNet +", *(h for h, *_ in _SUMMARY), "n"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, label in (("baseline", "baseline"), ("affinity", "Affinity"), ("aaf", "AAF")):
        cells = []   # (text, seeds) per column; None where no run has the evaluation yet
        for _, metric, tag, column, digits in _SUMMARY:
            try:
                row = method_table(df, metric, tag, base="pspnet", methods=[method],
                                   groups=protocol.benchmark["spec"]["class_groups"])
            except ValueError:   # evaluations without this metric
                row = pd.DataFrame()
            if row.empty or pd.isna(row[column].iloc[0]):
                cells.append(None)
                continue
            value, std = row[column].iloc[0], row["± std"].iloc[0] if column == "mean" else float("nan")
            cells.append((f"{value:.{digits}f}" + ("" if pd.isna(std) else f" ± {std:.{digits}f}"),
                          int(row["seeds"].iloc[0])))
        n = cells[0][1] if cells[0] else 0
        # a column with other seeds than val mIoU's (its evaluations still running) says how many
        cells = ["–" if c is None else c[0] if c[1] == n else f"{c[0]} (n = {c[1]})" for c in cells]
        lines.append("| " + " | ".join([label, *cells, str(n)]) + " |")
    lines.append("")
    if ledger is not None:
        rows = ledger.set_index("id")
        for cid, what in _KEY_CLAIMS:
            r = rows.loc[cid]
            if r["n"] >= 2:
                lines.append(f"- **{what}** ({cid}): {r['d']:+.2f} mIoU points over {int(r['n'])} paired seeds, "
                             f"corrected interval [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]: **{r['verdict']}**.")
            else:
                lines.append(f"- **{what}** ({cid}): fewer than 2 paired seeds so far.")
        counts = rows["verdict"].value_counts()
        lines += ["", "Verdicts of the study's ledger so far: "
                  + ", ".join(f"{n} {v}" for v, n in counts.items()) + f" (of {len(rows)} claims)."]
    if budget is not None:
        lines += ["", "How long the whole study takes, from the landed runs' recorded times:", "", budget_text(budget)]
    lines += ["", README_END]
    return "\n".join(lines)


def readme_block(text: str) -> str:
    """The results block of a README's ``text`` (markers included); ``ValueError`` without markers."""
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise ValueError(f"the README has no results block ({README_START} ... {README_END})")
    return text[start:end + len(README_END)]


def compute_budget(protocol: Protocol, results_root: str | Path = "results") -> dict:
    """How long the study takes, from what its landed runs recorded (``provenance`` of each
    ``metrics.json``), projected to every training and evaluation the protocol lists.

    * ``step_s``: mean median step time (s) of the landed study trainings that timed their steps
      (two side by side on one thread each, as ``protocol/run_study.sh`` runs them), ``timed`` how
      many; ``run_min`` = steps x step_s / 60, one run's training wall time;
    * ``train_machine_h``: every training of the protocol at ``run_min``, two at a time;
    * ``eval_s``: mean ``evaluation_seconds`` per evaluation tag (landed evaluations), ``eval_machine_h``
      every evaluation of the protocol at those means (tags never timed are left out, listed in
      ``untimed``), one at a time;
    * ``landed`` / ``planned``: trainings; ``slowest_eval_s``: the slowest tag's mean;
    * when ``results_root/benchmarks/train_step_cuda.json`` exists (:func:`~aafcore.report.results.load_benchmark`),
      ``gpu_run_min``: one run's training at that file's AAF step time (a larger network than the
      study's: an upper bound) and ``gpu_train_h`` every training one after the other.

    Numbers are None where nothing has been measured."""
    root = Path(results_root) / "study" / "synthetic"
    names = {f"{g.base}-{g.method}{_suffix(g)}-s{s}": g for g in protocol.runs for s in g.seeds}
    steps = int(protocol.training["length_rule"]["chosen_steps"])
    step_times, eval_times, landed = [], {}, 0
    for name in names:
        result = read_json(root / name / "metrics.json") if (root / name / "metrics.json").is_file() else None
        if not isinstance(result, dict):
            continue
        landed += 1
        step = (result.get("provenance") or {}).get("median_step_seconds")
        if step is not None:
            step_times.append(float(step))
        for path in sorted((root / name / "eval").glob("*/metrics.json")):
            seconds = ((read_json(path) or {}).get("provenance") or {}).get("evaluation_seconds")
            if seconds is not None:
                eval_times.setdefault(path.parent.name, []).append(float(seconds))
    planned_evals = {}
    for g in protocol.runs:
        for tag in g.evaluations:
            planned_evals[tag] = planned_evals.get(tag, 0) + len(g.seeds)
    eval_s = {tag: sum(v) / len(v) for tag, v in eval_times.items()}
    step_s = sum(step_times) / len(step_times) if step_times else None
    run_min = steps * step_s / 60 if step_s else None
    out = {"steps": steps, "planned": len(names), "landed": landed, "timed": len(step_times), "step_s": step_s,
           "run_min": run_min, "train_machine_h": run_min * len(names) / 2 / 60 if run_min else None,
           "eval_s": eval_s, "planned_evals": planned_evals,
           "eval_machine_h": sum(eval_s[t] * n for t, n in planned_evals.items() if t in eval_s) / 3600 if eval_s else None,
           "untimed": sorted(t for t in planned_evals if t not in eval_s),
           "slowest_eval_s": max(eval_s.values()) if eval_s else None, "gpu_run_min": None, "gpu_train_h": None}
    gpu_step = load_benchmark(results_root, "train_step_cuda")
    if gpu_step:
        aaf = next((r for r in gpu_step["results"] if r["method"] == "aaf"), None)
        if aaf:
            out["gpu_run_min"] = steps * aaf["median_ms"] / 1000 / 60
            out["gpu_train_h"] = out["gpu_run_min"] * len(names) / 60
            out["gpu_device"] = gpu_step.get("device")
            out["gpu_setting"] = f"{gpu_step['backbone']}, batch {gpu_step['batch_size']}, {gpu_step['crop_size']} px"
    return out


def budget_text(budget: dict) -> str:
    """:func:`compute_budget` as the setup page's markdown: measured on 2 cores, then the estimates
    for one GPU and for a Slurm cluster."""
    if not budget["step_s"]:
        return "No study training has recorded its step time yet: nothing to estimate from."
    lines = [f"* **2 cores (measured)**: {budget['timed']} of the {budget['landed']} landed trainings timed their "
             f"steps: {budget['step_s']:.2f} s a step on average (two runs side by side on one thread each), so "
             f"{budget['run_min']:.0f} minutes a run of {budget['steps']} steps and about "
             f"{budget['train_machine_h']:.1f} hours of the machine for all {budget['planned']} trainings, two at a time."]
    if budget["eval_s"]:
        per = ", ".join(f"{tag} {s:.0f} s" for tag, s in sorted(budget["eval_s"].items(), key=lambda kv: kv[1]))
        missing = f" ({', '.join(budget['untimed'])} not timed yet, left out)" if budget["untimed"] else ""
        lines.append(f"  Evaluations, mean per run: {per}; the protocol's {sum(budget['planned_evals'].values())} "
                     f"evaluations add about {budget['eval_machine_h']:.1f} hours on one thread, one at a time (half that "
                     f"two side by side){missing}.")
    if budget["gpu_run_min"]:
        lines.append(f"* **One GPU (estimated)**: the training step measured on an {budget['gpu_device']} for the gpu "
                     f"profile's larger network ({budget['gpu_setting']}, AAF) bounds the study's: at most "
                     f"{budget['gpu_run_min']:.1f} minutes a run, {budget['gpu_train_h']:.1f} hours for every training "
                     f"one after the other (evaluations not estimated: they were not timed on a GPU).")
    slowest = f" plus its slowest evaluation ({budget['slowest_eval_s'] / 60:.0f} minutes)" if budget["eval_s"] else ""
    lines.append(f"* **A Slurm cluster (estimated)**: `aaf reproduce --profile study --executor slurm --jobs "
                 f"{budget['planned']} --cpus-per-job 2` submits every training at once; with a node per run the "
                 f"wall time is one run's, at most the {budget['run_min']:.0f} minutes measured above{slowest}.")
    return "\n".join(lines)
