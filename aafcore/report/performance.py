"""The performance page: the speed and memory figures that ``benchmarks/*.py`` measured side by side
and wrote to ``<results_root>/benchmarks/*.json``, and the GPU runs, each table with the provenance
line (machine, torch, recorded commit, date) of the file it comes from.

Every ``*_table`` function returns ``(frame, note)``: the table and one markdown line under it.
A missing file gives an empty table and a note that says which file is missing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from aafcore.report.results import base_label, benchmark_path, load_benchmark, load_results, select_rows

__all__ = ["GPU_STEP_BENCHMARKS", "short_commit", "provenance_line", "loss_benchmark_table", "step_benchmark_table",
           "inference_benchmark_table", "gpu_step_table", "cuda_check_table", "gpu_runs_table"]

# train-step benchmark files on the GPU -> the setting they time
GPU_STEP_BENCHMARKS = {"train_step_cuda": "gpu profile", "train_step_cuda_voc": "VOC step",
                       "train_step_cuda_cityscapes": "Cityscapes step per GPU"}
_LOSS_COLUMNS = ["shape", "edge_pair_fraction", "naive_ms", "aafcore_ms", "speedup", "naive_peak_mib",
                 "aafcore_peak_mib", "memory_ratio"]
_CUDA_CHECK_COLUMNS = ["loss", "input_dtype", "loss_rel_diff", "grad_logits_rel_diff", "grad_weights_rel_diff", "ok"]


def short_commit(commit: str | None) -> str:
    """The first 12 hex digits of a recorded commit, its ``+dirty`` mark kept; ``unknown`` when none."""
    if not commit:
        return "unknown"
    sha, plus, rest = str(commit).partition("+")
    return sha[:12] + plus + rest


def provenance_line(provenance: dict, machine: str | None = None) -> str:
    """``AMD EPYC, 2 threads, torch 2.14.1+cu130, commit 0327923d79aa, 2026-11-25`` from a recorded
    provenance: a benchmark file's (``cpu``, ``packages``, ``date``), a benchmark row's (``device``,
    ``torch``, ``date``) or a run's (``device``, ``packages``, ``started``).  ``machine`` replaces
    the machine the provenance names (a GPU benchmark times the GPU, not the CPU it records)."""
    packages = provenance.get("packages", {})
    if machine is None:
        cpu = f"{provenance.get('cpu', '?')}, {packages.get('cpu_threads', '?')} threads"
        machine = provenance.get("device") or cpu
    torch = packages.get("torch", provenance.get("torch", "?"))
    date = str(provenance.get("date") or provenance.get("started") or "")[:10]
    return f"{machine}, torch {torch}, commit {short_commit(provenance.get('git_commit'))}, {date}"


def _file_provenance(d: dict) -> str:
    """The provenance line of a benchmark file: the timed device when it is a GPU, else the CPU."""
    device = d.get("device")
    return provenance_line(d.get("provenance", {}), None if device in (None, "cpu") else device)


def _missing(results_root, name: str) -> tuple[pd.DataFrame, str]:
    return pd.DataFrame(), f"*Not measured here: `{benchmark_path(results_root, name)}` not found.*"


def loss_benchmark_table(results_root="results", device: str = "cpu") -> tuple[pd.DataFrame, str]:
    """``benchmarks/aaf_loss.py``: the AAF loss (forward + backward) against a port of the official
    data flow, per shape: time (ms), speed-up, peak memory (MiB) and its ratio."""
    name = f"aaf_loss_{device}"
    d = load_benchmark(results_root, name)
    if d is None:
        return _missing(results_root, name)
    rows = pd.DataFrame(d["results"])
    prov = rows.pop("provenance").iloc[0]
    note = (f"Sizes {d['kernel_sizes']}, forward + backward, float32, median of {d['reps']}; "
            f"*{provenance_line(prov)}*")
    return rows[_LOSS_COLUMNS], note


def step_benchmark_table(results_root="results", device: str = "cpu") -> tuple[pd.DataFrame, str]:
    """``benchmarks/train_step.py``: one training step of every method (index) against the baseline:
    median ms, images / s and the ratio to the baseline's step."""
    name = f"train_step_{device}"
    d = load_benchmark(results_root, name)
    if d is None:
        return _missing(results_root, name)
    frame = pd.DataFrame(d["results"]).drop(columns=["quartiles_ms"], errors="ignore").set_index("method")
    note = (f"{base_label(d.get('base', 'pspnet'))} ({d['backbone']}), batch {d['batch_size']}, "
            f"{d['crop_size']} px crops, median of {d['reps']} rounds; *{_file_provenance(d)}*")
    return frame, note


def inference_benchmark_table(results_root="results", device: str = "cpu") -> tuple[pd.DataFrame, str]:
    """``benchmarks/evaluate.py``: ms per image of the network (single scale), multi-scale + flip,
    the dense CRF and the metrics, and each one's ratio to the single-scale network."""
    name = f"evaluate_{device}"
    d = load_benchmark(results_root, name)
    if d is None:
        return _missing(results_root, name)
    frame = pd.DataFrame({"ms / image": d["median_ms_per_image"],
                          "ratio to the network": d["ratio_to_single_scale_network"]})
    full = d["full_single_scale_evaluation"]
    note = (f"A single-scale evaluation of the {full['images']} {d.get('split', 'val')} images with every metric: "
            f"{full['wall_seconds']:.1f} s (metrics {full['metric_seconds']:.1f} s). *{_file_provenance(d)}*")
    return frame, note


def gpu_step_table(results_root="results", benchmarks: dict[str, str] | None = None) -> tuple[pd.DataFrame, str]:
    """Training steps on the GPU, one block per benchmark file of ``benchmarks`` (file name -> the
    setting; default :data:`GPU_STEP_BENCHMARKS`), indexed by (setting, method): median ms,
    images / s and the ratio to the baseline; files not found are left out."""
    steps, notes = [], []
    for name, label in (benchmarks or GPU_STEP_BENCHMARKS).items():
        d = load_benchmark(results_root, name)
        if d is None:
            continue
        setting = f"{label}: {d['backbone']}, batch {d['batch_size']}, {d['crop_size']} px"
        steps += [{"setting": setting, "method": r["method"], "median ms": r["median_ms"],
                   "images / s": r["images_per_second"], "x baseline": r["ratio_to_baseline"]} for r in d["results"]]
        notes.append(_file_provenance(d))
    if not steps:
        return _missing(results_root, next(iter(benchmarks or GPU_STEP_BENCHMARKS)))
    return pd.DataFrame(steps).set_index(["setting", "method"]), "; ".join(f"*{n}*" for n in dict.fromkeys(notes))


def cuda_check_table(results_root="results") -> tuple[pd.DataFrame, str]:
    """``benchmarks/cuda_check.py``: the losses and their gradients on the GPU against float64 on the
    CPU (relative differences), the trainer steps with autocast + channels_last and a smoke run."""
    d = load_benchmark(results_root, "cuda_check")
    if d is None:
        return _missing(results_root, "cuda_check")
    frame = pd.DataFrame(d["losses"])[_CUDA_CHECK_COLUMNS]
    steps = ", ".join(r["method"] + (" ok" if r["ok"] else " FAILED") for r in d["trainer_steps"])
    note = (f"Trainer steps with autocast + channels_last: {steps}; "
            f"a smoke run end to end: {'ok' if d['run']['ok'] else 'FAILED'} ({d['device']}).")
    return frame, note


def _column(rows: pd.DataFrame, column: str, scale: float, index) -> pd.Series:
    values = rows[column].astype(float) * scale if column in rows else pd.Series(np.nan, index=rows.index)
    return values.reindex(index)


def gpu_runs_table(results_root="results", profile: str = "gpu", dataset: str = "synthetic",
                   base: str = "pspnet", seed: int = 0) -> tuple[pd.DataFrame, str]:
    """The runs of ``<results_root>/<profile>/<dataset>`` (one ``seed`` of each method on ``base``),
    one row per method: val mIoU % (all, thin, large classes), the test split with multi-scale +
    flip (mIoU %, instance mIoU %, boundary recall) on the source and the shifted domain, training
    minutes and median step ms.  The note is the provenance each run recorded (its ``git_commit``
    as written; ``results/README.md`` explains the GPU runs' ``+dirty`` mark)."""
    df = load_results(profile, dataset, results_root)

    def rows(tag):
        sel = select_rows(df, tag, base)
        return sel[sel["seed"] == seed].set_index("trained_method")

    val, test, shifted = rows("val-source"), rows("test-source-ms"), rows("test-shifted-ms")
    columns = {"val mIoU %": (val, "miou", 100), "thin %": (val, "miou_thin", 100), "large %": (val, "miou_large", 100),
               "test mIoU % (ms+flip)": (test, "miou", 100), "test instance mIoU %": (test, "instance_miou", 100),
               "test boundary R": (test, "mean_boundary_recall", 1), "shifted test mIoU %": (shifted, "miou", 100),
               "training min": (val, "train_seconds", 1 / 60), "median step ms": (val, "median_step_seconds", 1000)}
    frame = pd.DataFrame({name: _column(r, col, scale, val.index) for name, (r, col, scale) in columns.items()})
    notes = [provenance_line(json.loads(Path(p).read_text()).get("provenance", {})) for p in val["path"]]
    return frame.rename_axis(None), "; ".join(f"*{n}*" for n in dict.fromkeys(notes))
