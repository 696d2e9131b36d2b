"""The performance page: the speed and memory figures that ``benchmarks/*.py`` measured side by side
and wrote to ``<results_root>/benchmarks/*.json``, and the GPU runs, each table with the provenance
line (machine, torch, recorded commit, date) of the file it comes from.

Every ``*_table`` function returns ``(frame, note)``: the table, with the book's headers (words and
units: ``naive ms``, ``edge pairs %``, ``× baseline``) and row labels (``PSPNet``, ``AAF``,
``dense CRF``), and one markdown line under it.  Values are numbers (fractions as percent; the
notebook rounds them with :func:`~aafcore.report.tables.table`), except the relative differences
of :func:`cuda_check_table`, written as ``2.5e-08``.  A missing file gives an empty table and a
note that says which file is missing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from aafcore.report.results import (METHOD_ORDER, base_label, benchmark_path, load_benchmark, load_results, method_label,
                                    select_rows)
from aafcore.report.tables import MISSING

__all__ = ["GPU_STEP_BENCHMARKS", "LOSS_LABELS", "short_commit", "provenance_line", "loss_benchmark_file",
           "loss_benchmark_table", "step_benchmark_table", "inference_benchmark_table", "gpu_step_table",
           "cuda_check_table", "gpu_runs_table"]

# train-step benchmark files on the GPU -> the setting they time
GPU_STEP_BENCHMARKS = {"train_step_cuda": "gpu profile", "train_step_cuda_voc": "VOC step",
                       "train_step_cuda_cityscapes": "Cityscapes per GPU"}
# benchmarks/aaf_loss.py's columns -> (header, scale): the official data flow's port is "naive"; the
# cross-entropy columns (CE ms, aafcore / CE) and aafcore's torch-ops backend are shown when the file has them
_LOSS_COLUMNS = {"edge_pair_fraction": ("edge pairs %", 100.0), "naive_ms": ("naive ms", 1.0),
                 "aafcore_ms": ("aafcore ms", 1.0), "torch_backend_ms": ("torch backend ms", 1.0),
                 "ce_ms": ("CE ms", 1.0), "speedup": ("speed-up ×", 1.0),
                 "aafcore_to_ce": ("aafcore / CE", 1.0), "naive_peak_mib": ("naive peak MiB", 1.0),
                 "aafcore_peak_mib": ("aafcore peak MiB", 1.0), "memory_ratio": ("memory ×", 1.0)}
LOSS_LABELS = ("scenes", "blocks", "noise")   # benchmarks/aaf_loss.py --labels
# benchmarks/evaluate.py's timings -> the row label
_INFERENCE_ROWS = {"network_single_scale": "network, single scale", "network_multiscale_flip": "network, multi-scale + flip",
                   "crf": "dense CRF", "metrics": "all metrics"}
# benchmarks/cuda_check.py's relative differences (GPU against float64 on the CPU) -> header
_CUDA_CHECK_COLUMNS = {"loss_rel_diff": "loss", "grad_logits_rel_diff": "gradient (logits)",
                       "grad_weights_rel_diff": "gradient (size weights)"}
_STEP_COLUMNS = {"median_ms": "median ms", "images_per_second": "images / s", "ratio_to_baseline": "× baseline"}


def _shape(shape) -> str:
    """``[8, 21, 42, 42]`` -> ``8×21×42×42``."""
    return "×".join(str(n) for n in shape)


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


def loss_benchmark_file(device: str = "cpu", labels: str = "scenes") -> str:
    """The benchmark name of ``benchmarks/aaf_loss.py --labels labels`` on ``device``:
    ``aaf_loss_cpu`` for scene-like labels, ``aaf_loss_cpu_blocks`` / ``aaf_loss_cpu_noise`` else."""
    return f"aaf_loss_{device}" if labels == "scenes" else f"aaf_loss_{device}_{labels}"


def loss_benchmark_table(results_root="results", device: str = "cpu", labels=("scenes",)) -> tuple[pd.DataFrame, str]:
    """``benchmarks/aaf_loss.py``: the AAF loss (forward + backward) against a port of the official
    data flow (``naive``), one row per logits shape ``N×C×H×W`` (and label kind, when ``labels``
    names several: index ``(labels, N×C×H×W)``): the share of edge pairs (%), the time of each (ms),
    cross-entropy's when measured, the speed-up and AAF's time over CE's, the peak memory of each
    (MiB) and its ratio.  A label kind whose file is missing is named in the note."""
    frames, provenances, missing, header = {}, [], [], None
    for kind in labels:
        name = loss_benchmark_file(device, kind)
        d = load_benchmark(results_root, name)
        if d is None:
            missing.append(name)
            continue
        rows = pd.DataFrame(d["results"])
        provenances.append(provenance_line(rows.pop("provenance").iloc[0]))
        backend = rows["backend"].iloc[0] if "backend" in rows.columns else None
        frame = pd.DataFrame({head: rows[column].astype(float) * scale
                              for column, (head, scale) in _LOSS_COLUMNS.items() if column in rows.columns})
        frame.index = pd.Index([_shape(s) for s in rows["shape"]], name="N×C×H×W")
        frames[kind] = frame
        header = header or (f"Kernel sizes {', '.join(str(k) for k in d['kernel_sizes'])}, forward + backward, "
                            f"float32, median of {d['reps']}"
                            + (f"; aafcore on its `{backend}` backend" if backend else ""))
    if not frames:
        return _missing(results_root, loss_benchmark_file(device, labels[0]))
    if len(labels) == 1:
        frame = next(iter(frames.values()))
    else:
        frame = pd.concat(frames, names=["labels"])
    where = (f"*{provenances[0]}*" if len(set(provenances)) == 1 else
             "; ".join(f"{kind}: *{p}*" for kind, p in zip(frames, provenances)))
    note = f"{header}; {where}"
    if missing:
        note += " Not measured here: " + ", ".join(f"`{benchmark_path(results_root, m)}`" for m in missing) + "."
    return frame, note


def step_benchmark_table(results_root="results", device: str = "cpu") -> tuple[pd.DataFrame, str]:
    """``benchmarks/train_step.py``: one training step of every method (rows ``PSPNet``, ``AAF``, ...)
    against the baseline: ``median ms``, ``images / s`` and ``× baseline`` (the ratio of the steps)."""
    name = f"train_step_{device}"
    d = load_benchmark(results_root, name)
    if d is None:
        return _missing(results_root, name)
    base = d.get("base", "pspnet")
    rows = pd.DataFrame(d["results"])
    frame = rows[list(_STEP_COLUMNS)].rename(columns=_STEP_COLUMNS)
    frame.index = pd.Index([method_label(base, m) for m in rows["method"]], name="method")
    note = (f"{base_label(base)} ({d['backbone']}), batch {d['batch_size']}, "
            f"{d['crop_size']} px crops, median of {d['reps']} rounds; *{_file_provenance(d)}*")
    return frame, note


def inference_benchmark_table(results_root="results", device: str = "cpu") -> tuple[pd.DataFrame, str]:
    """``benchmarks/evaluate.py``: ms per image of the network (single scale), multi-scale + flip,
    the dense CRF and the metrics (rows ``network, single scale``, ... ``dense CRF``, ``all
    metrics``), and each one's ratio to the single-scale network (``× network``)."""
    name = f"evaluate_{device}"
    d = load_benchmark(results_root, name)
    if d is None:
        return _missing(results_root, name)
    frame = pd.DataFrame({"ms / image": d["median_ms_per_image"],
                          "× network": d["ratio_to_single_scale_network"]})
    frame.index = [_INFERENCE_ROWS.get(k, k) for k in frame.index]
    full = d["full_single_scale_evaluation"]
    note = (f"A single-scale evaluation of the {full['images']} {d.get('split', 'val')} images with every metric: "
            f"{full['wall_seconds']:.1f} s (metrics {full['metric_seconds']:.1f} s). *{_file_provenance(d)}*")
    return frame, note


def gpu_step_table(results_root="results", benchmarks: dict[str, str] | None = None) -> tuple[pd.DataFrame, str]:
    """Training steps on the GPU, one block per benchmark file of ``benchmarks`` (file name -> the
    setting; default :data:`GPU_STEP_BENCHMARKS`), indexed by (setting, method): ``median ms``,
    ``images / s`` and ``× baseline``; files not found are left out."""
    steps, notes = [], []
    for name, label in (benchmarks or GPU_STEP_BENCHMARKS).items():
        d = load_benchmark(results_root, name)
        if d is None:
            continue
        setting = f"{label}: {d['backbone']}, batch {d['batch_size']}, {d['crop_size']} px"
        base = d.get("base", "pspnet")
        steps += [{"setting": setting, "method": method_label(base, r["method"]),
                   **{header: r[key] for key, header in _STEP_COLUMNS.items()}} for r in d["results"]]
        notes.append(_file_provenance(d))
    if not steps:
        return _missing(results_root, next(iter(benchmarks or GPU_STEP_BENCHMARKS)))
    return pd.DataFrame(steps).set_index(["setting", "method"]), "; ".join(f"*{n}*" for n in dict.fromkeys(notes))


def _sci(value) -> str:
    """A relative difference as ``2.5e-08``; :data:`~aafcore.report.tables.MISSING` where there is none."""
    return MISSING if value is None or not np.isfinite(value) else f"{value:.1e}"


def cuda_check_table(results_root="results") -> tuple[pd.DataFrame, str]:
    """``benchmarks/cuda_check.py``: the losses and their gradients on the GPU against float64 on the
    CPU, one row per (loss, logits dtype): the relative differences of the loss, of its gradient
    with respect to the logits and, for AAF, with respect to its size weights (written ``2.5e-08``;
    the affinity loss has no size weights: "–"), and ``within tolerance`` (``yes``: all three within
    the script's tolerance).
    The note: the trainer steps with autocast + channels_last and a smoke run."""
    d = load_benchmark(results_root, "cuda_check")
    if d is None:
        return _missing(results_root, "cuda_check")
    losses = pd.DataFrame(d["losses"])
    frame = pd.DataFrame({header: [_sci(v) for v in losses.get(column, pd.Series(np.nan, index=losses.index))]
                          for column, header in _CUDA_CHECK_COLUMNS.items()})
    frame["within tolerance"] = ["yes" if ok else "no" for ok in losses["ok"]]
    frame.index = pd.MultiIndex.from_arrays([[method_label("pspnet", m) for m in losses["loss"]], losses["input_dtype"]],
                                            names=["method", "logits dtype"])
    steps = ", ".join(method_label("pspnet", r["method"]) + (" ok" if r["ok"] else " FAILED")
                      for r in d["trainer_steps"])
    note = (f"Relative differences from float64 on the CPU. Trainer steps with autocast + channels_last: {steps}; "
            f"a smoke run end to end: {'ok' if d['run']['ok'] else 'FAILED'} ({d['device']}).")
    return frame, note


def _column(rows: pd.DataFrame, column: str, scale: float, index) -> pd.Series:
    values = rows[column].astype(float) * scale if column in rows else pd.Series(np.nan, index=rows.index)
    return values.reindex(index)


def gpu_runs_table(results_root="results", profile: str = "gpu", dataset: str = "synthetic",
                   base: str = "pspnet", seed: int = 0) -> tuple[pd.DataFrame, str]:
    """The runs of ``<results_root>/<profile>/<dataset>`` (one ``seed`` of each method on ``base``),
    one row per method (``PSPNet``, ``AAF``, ..., the paper's order): val mIoU % (all, thin, large
    classes), the test split with multi-scale + flip (mIoU %, instance mIoU %, boundary recall %) on
    the source and the shifted domain, training minutes and median step ms.  The note is the
    provenance each run recorded (its ``git_commit`` as written; ``results/README.md`` explains the
    GPU runs' ``+dirty`` mark)."""
    df = load_results(profile, dataset, results_root)

    def rows(tag):
        sel = select_rows(df, tag, base)
        return sel[sel["seed"] == seed].set_index("trained_method")

    val, test, shifted = rows("val-source"), rows("test-source-ms"), rows("test-shifted-ms")
    order = sorted(val.index, key=lambda m: METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER))
    columns = {"val mIoU %": (val, "miou", 100), "val thin %": (val, "miou_thin", 100),
               "val large %": (val, "miou_large", 100), "test mIoU %": (test, "miou", 100),
               "test instance mIoU %": (test, "instance_miou", 100),
               "test boundary recall %": (test, "mean_boundary_recall", 100),
               "shifted test mIoU %": (shifted, "miou", 100),
               "training min": (val, "train_seconds", 1 / 60), "median step ms": (val, "median_step_seconds", 1000)}
    frame = pd.DataFrame({name: _column(r, col, scale, order) for name, (r, col, scale) in columns.items()})
    frame.index = [method_label(base, m) for m in order]
    notes = [provenance_line(json.loads(Path(p).read_text()).get("provenance", {})) for p in val.loc[order, "path"]]
    return frame, "; ".join(f"*{n}*" for n in dict.fromkeys(notes))
