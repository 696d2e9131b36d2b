"""Table 1 of the paper, the part of it that can be measured: training-step cost, run-time inference
and mIoU of CRF, GAN and AAF, from our runs and the side-by-side timings of ``benchmarks/``."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pathlib import Path

from aafcore.report.results import METHOD_ORDER, base_label, benchmark_path, load_benchmark, method_label, select_rows
from aafcore.report.tables import method_table
from aafcore.runs import read_json

__all__ = ["run_time_table", "cost_table", "inference_cost_note", "training_cost_table"]
# crf_run_time is public but not in __all__ (the package re-exports __all__; findings imports it directly)

# Table 1's rows: (label, method, structure guidance as the paper names it, evaluation of the mIoU)
_TABLE1_ROWS = (("CRF", "crf", "input image", "val-source-crf"), ("GAN", "gan", "ground-truth labels", "val-source"),
                ("AAF", "aaf", "label affinity", "val-source"))


def run_time_table(df: pd.DataFrame) -> pd.DataFrame:
    """Table 1's measurable columns from the runs themselves: inference time per image (the
    network's, and what the dense CRF adds), and mIoU %, for PSPNet, PSPNet + CRF, GAN and AAF
    (means over the seeds found).

    These are the runs' own evaluations: every image of the split, in batches of 8, the network's
    total time divided by the images (ms/image); the CRF runs one image at a time in the same pass
    (its evaluation's network time and CRF time are therefore measured side by side)."""
    rows = []
    for method, tag in (("baseline", "val-source"), ("crf", "val-source-crf"), ("gan", "val-source"),
                        ("aaf", "val-source")):
        sel = select_rows(df, tag, "pspnet", [method])
        if sel.empty:
            continue
        rows.append({"method": method_label("pspnet", method),
                     "network (ms/image)": 1000 * sel["inference_seconds_per_image"].astype(float).mean(),
                     "CRF (ms/image)": 1000 * sel["crf_seconds_per_image"].astype(float).fillna(0).mean(),
                     "mIoU": 100 * sel["miou"].mean(), "seeds": len(sel)})
    return pd.DataFrame(rows, columns=["method", "network (ms/image)", "CRF (ms/image)", "mIoU", "seeds"])


def crf_run_time(df: pd.DataFrame) -> dict | None:
    """The dense CRF's cost in the runs' own CRF evaluations (``val-source-crf`` of the PSPNet
    baseline), means over them: ``network_ms`` and ``crf_ms`` per image (measured in the same
    pass), their ``ratio`` (CRF / network) and ``seeds``; None when there is no CRF evaluation."""
    sel = select_rows(df, "val-source-crf", "pspnet", ["crf"])
    if sel.empty:
        return None
    net = 1000 * float(sel["inference_seconds_per_image"].astype(float).mean())
    crf = 1000 * float(sel["crf_seconds_per_image"].astype(float).mean())
    return {"network_ms": net, "crf_ms": crf, "ratio": crf / net if net > 0 else np.nan, "seeds": len(sel)}


def training_cost_table(profile: str, dataset: str = "synthetic", results_root="results") -> pd.DataFrame:
    """What the runs themselves cost, from each run's own ``metrics.json`` (the training, not its
    evaluations): per (base, method) with the default kernel sizes and weighting, the mean over its
    runs of the median step time (s; a resumed run's covers the steps after the resume) and of the
    training minutes (runs trained in one go only), the step time's ratio to the same base's baseline,
    and how many runs each mean has.  The runs' conditions are recorded, not controlled (two side by
    side, other work on the machine): the ratio is a rough guide, the benchmarks' side-by-side ratio
    is the measurement."""
    rows = []
    for path in sorted(Path(results_root, profile, dataset).glob("*/metrics.json")):
        result = read_json(path)
        if not isinstance(result, dict) or result.get("overrides") or "config" not in result:
            continue
        cfg, prov = result["config"], result.get("provenance", {})
        if cfg.get("method", "").startswith("aaf") and (list(cfg.get("kernel_sizes", [])) != [3, 5, 7]
                                                        or cfg.get("weight_by", "label") != "label"):
            continue
        whole = not prov.get("resumed_from_step") and prov.get("train_seconds") is not None
        rows.append({"base": cfg["base"], "method": cfg["method"],
                     "step": np.nan if prov.get("median_step_seconds") is None else prov["median_step_seconds"],
                     "minutes": prov["train_seconds"] / 60 if whole else np.nan})
    columns = ["base", "method", "median step (s)", "× baseline", "runs timed", "training (min)", "runs in one go"]
    if not rows:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(rows)
    out = frame.groupby(["base", "method"]).agg(step=("step", "mean"), timed=("step", "count"),
                                                minutes=("minutes", "mean"), whole=("minutes", "count")).reset_index()
    base_step = out[out["method"] == "baseline"].set_index("base")["step"]
    out["ratio"] = out["step"] / out["base"].map(base_step)
    out["_order"] = [(b != "fcn", METHOD_ORDER.index(m) if m in METHOD_ORDER else 99)
                     for b, m in zip(out["base"], out["method"])]
    out = out.sort_values("_order").reset_index(drop=True)
    out["method"] = [method_label(b, m) for b, m in zip(out["base"], out["method"])]
    out["base"] = out["base"].map(base_label)
    return out.rename(columns={"step": "median step (s)", "ratio": "× baseline", "timed": "runs timed",
                               "minutes": "training (min)", "whole": "runs in one go"})[columns]


def _inference_ms(results_root, device: str) -> dict:
    bench = load_benchmark(results_root, f"evaluate_{device}") or {}
    return bench.get("median_ms_per_image", {"crf": np.nan, "network_single_scale": np.nan})


def _times(value: float) -> str:
    return "–" if not np.isfinite(value) else f"×{value:.2f}"


def cost_table(df: pd.DataFrame, results_root="results", device: str = "cpu") -> pd.DataFrame:
    """Table 1, ours: per method (index CRF, GAN, AAF) its structure guidance, the training-step
    time against the baseline (side by side, ``<results_root>/benchmarks/train_step_<device>.json``),
    whether it needs run-time inference and what it costs, and the PSPNet val mIoU % (± seed std,
    seeds).

    The CRF's cost is the one of these runs' own CRF evaluations (:func:`crf_run_time`: ms per image
    added, and its ratio to the network's time in the same pass), so that it is measured on the
    same images as the mIoU beside it; without a CRF evaluation, the side-by-side benchmark's
    (``evaluate_<device>.json``; :func:`inference_cost_note` says how the two are measured).
    Missing numbers show as "–"."""
    step = load_benchmark(results_root, f"train_step_{device}") or {"results": []}
    ratio = {r["method"]: r["ratio_to_baseline"] for r in step["results"]}
    runs = crf_run_time(df)
    if runs is not None:
        crf_ms, crf_ratio = runs["crf_ms"], runs["ratio"]
    else:
        ms = _inference_ms(results_root, device)
        crf_ms, crf_ratio = ms["crf"], ms["crf"] / ms["network_single_scale"]
    crf_cost = ("yes" if not np.isfinite(crf_ms) else
                f"yes: +{crf_ms:.1f} ms/image (×{crf_ratio:.1f} the network)")
    rows = []
    for label, method, guidance, tag in _TABLE1_ROWS:
        t = method_table(df, "iou", tag, base="pspnet", methods=[method])
        crf = method == "crf"
        rows.append({"method": label, "structure guidance": guidance,
                     "training step": "×1.00 (unchanged)" if crf else _times(ratio.get(method, np.nan)),
                     "run-time inference": crf_cost if crf else "no (the network only)",
                     "mIoU": t["mean"].iloc[0] if len(t) else np.nan,
                     "± std": t["± std"].iloc[0] if len(t) else np.nan,
                     "seeds": int(t["seeds"].iloc[0]) if len(t) else 0})
    return pd.DataFrame(rows).set_index("method")


def inference_cost_note(results_root="results", device: str = "cpu", df: pd.DataFrame | None = None,
                        profile: str | None = None) -> str:
    """The markdown paragraph under Table 1: which measurement each time on the page is.

    The side-by-side benchmark (``benchmarks/evaluate.py``, ``evaluate_<device>.json``) times one
    image at a time (batch 1), the median over its images, on the images and network of the
    profile it names; the runs' own evaluations (with ``df``, :func:`crf_run_time`) time every
    image of the split in batches of 8, the network's total divided by the images.  A batch of
    one costs more per image, and the two were timed at different moments on a shared machine, so
    their numbers differ; the paragraph gives both and says so.  With the page's ``profile``, a
    benchmark of another profile (its network and images) is named as such.  Also: the factor the paper's
    multi-scale + flip test protocol costs, and the benchmark files' paths."""
    step_file = benchmark_path(results_root, f"train_step_{device}")
    eval_file = benchmark_path(results_root, f"evaluate_{device}")
    bench = load_benchmark(results_root, f"evaluate_{device}")
    step = load_benchmark(results_root, f"train_step_{device}")
    runs = crf_run_time(df) if df is not None else None
    parts = []
    if runs is not None:
        parts.append(f"**These runs' evaluations** (every image of the val split, in batches of 8; the "
                     f"network's total time divided by the images, the CRF one image at a time in the same pass; "
                     f"mean of {runs['seeds']} CRF evaluation{'s' if runs['seeds'] != 1 else ''}): the network "
                     f"takes {runs['network_ms']:.1f} ms per image and the CRF adds {runs['crf_ms']:.1f} ms "
                     f"(×{runs['ratio']:.1f}). Table 1's CRF row above uses these.")
    if bench is None:
        parts.append(f"No side-by-side inference benchmark: `{eval_file}` not found (`benchmarks/evaluate.py` writes it).")
    else:
        ms = bench["median_ms_per_image"]
        net, msf = ms["network_single_scale"], ms.get("network_multiscale_flip", float("nan"))
        where = "the CPU" if bench.get("device", device) == "cpu" else bench.get("device", device)
        size = " × ".join(str(s) for s in bench.get("image_size", []))
        of = f" of the `{bench['profile']}` profile" if bench.get("profile") else ""
        parts.append(f"**The side-by-side benchmark** (`{eval_file}`: one image at a time, median of "
                     f"{bench.get('timed_images', 'its')} images, the network{of} on {size} px images on {where}): "
                     f"the network takes {net:.1f} ms per image and the CRF adds {ms['crf']:.1f} ms "
                     f"(×{ms['crf'] / net:.1f}); multi-scale + flip inference, the paper's test protocol, costs "
                     f"{msf / net:.1f} times the network.")
    other = bench is not None and profile is not None and bench.get("profile") not in (None, profile)
    if runs is not None and bench is not None:
        why = ("a batch of one image costs more per image than a batch of 8"
               + (f", the benchmark's network and images are the `{bench['profile']}` profile's, not these runs'"
                  if other else "")
               + ", and they were timed at different moments on a shared machine")
        parts.append(f"The two measurements differ because {why}: compare ratios within one measurement, "
                     "not times across them.")
    if step is not None:
        of = f" (the `{step['profile']}` profile's network, batch {step.get('batch_size', '?')}, " \
             f"{step.get('crop_size', '?')} px crops)" if step.get("profile") else ""
        foreign = (f", not on these runs' network (`{profile}` profile): the overhead of a loss relative to a "
                   "larger network may differ"
                   if profile is not None and step.get("profile") not in (None, profile) else "")
        parts.append(f"Training-step ratios come from `{step_file}`{of}, every method timed side by side in one "
                     f"run{foreign}.")
    else:
        parts.append(f"No training-step benchmark: `{step_file}` not found.")
    return " ".join(parts)
