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

# Table 1's rows: (label, method, structure guidance as the paper names it, evaluation of the mIoU)
_TABLE1_ROWS = (("CRF", "crf", "input image", "val-source-crf"), ("GAN", "gan", "ground-truth labels", "val-source"),
                ("AAF", "aaf", "label affinity", "val-source"))


def run_time_table(df: pd.DataFrame) -> pd.DataFrame:
    """Table 1's measurable columns from the runs themselves: inference time per image (network,
    and the CRF's extra), and mIoU, for PSPNet, PSPNet + CRF, GAN and AAF (means over the seeds found)."""
    rows = []
    for method, tag in (("baseline", "val-source"), ("crf", "val-source-crf"), ("gan", "val-source"),
                        ("aaf", "val-source")):
        sel = select_rows(df, tag, "pspnet", [method])
        if sel.empty:
            continue
        rows.append({"method": method_label("pspnet", method),
                     "network ms/image": 1000 * sel["inference_seconds_per_image"].mean(),
                     "extra ms/image": 1000 * sel["crf_seconds_per_image"].astype(float).fillna(0).mean(),
                     "mIoU": 100 * sel["miou"].mean(), "seeds": len(sel)})
    return pd.DataFrame(rows)


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
    columns = ["base", "method", "median step (s)", "x baseline", "runs timed", "training (min)", "runs in one go"]
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
    return out.rename(columns={"step": "median step (s)", "ratio": "x baseline", "timed": "runs timed",
                               "minutes": "training (min)", "whole": "runs in one go"})[columns]


def _inference_ms(results_root, device: str) -> dict:
    bench = load_benchmark(results_root, f"evaluate_{device}") or {}
    return bench.get("median_ms_per_image", {"crf": np.nan, "network_single_scale": np.nan})


def cost_table(df: pd.DataFrame, results_root="results", device: str = "cpu") -> pd.DataFrame:
    """Table 1, ours: per method (index CRF, GAN, AAF) its structure guidance, the training-step
    time against the baseline (``<results_root>/benchmarks/train_step_<device>.json``), whether it
    needs run-time inference and what it costs (``evaluate_<device>.json``: the CRF's extra ms per
    image and its ratio to the network), and the PSPNet val mIoU % (± seed std, seeds).
    Missing benchmark files show as NaN."""
    step = load_benchmark(results_root, f"train_step_{device}") or {"results": []}
    ratio = {r["method"]: r["ratio_to_baseline"] for r in step["results"]}
    ms = _inference_ms(results_root, device)
    crf_cost = f"yes: +{ms['crf']:.1f} ms/image (x{ms['crf'] / ms['network_single_scale']:.1f} the network)"
    rows = []
    for label, method, guidance, tag in _TABLE1_ROWS:
        t = method_table(df, "iou", tag, base="pspnet", methods=[method])
        crf = method == "crf"
        rows.append({"method": label, "structure guidance": guidance,
                     "training step vs baseline": "x1.00 (no training change)" if crf
                     else f"x{ratio.get(method, np.nan):.2f}",
                     "run-time inference": crf_cost if crf else "no (the network only)",
                     "mIoU %": t["mean"].iloc[0] if len(t) else np.nan,
                     "± std": t["± std"].iloc[0] if len(t) else np.nan,
                     "seeds": int(t["seeds"].iloc[0]) if len(t) else 0})
    return pd.DataFrame(rows).set_index("method")


def inference_cost_note(results_root="results", device: str = "cpu") -> str:
    """One markdown sentence under Table 1: the network's time per image, the factor that the
    paper's multi-scale + flip test protocol costs, and the two benchmark files the numbers come from."""
    step_file = benchmark_path(results_root, f"train_step_{device}")
    eval_file = benchmark_path(results_root, f"evaluate_{device}")
    bench = load_benchmark(results_root, f"evaluate_{device}")
    if bench is None:
        return f"No inference timings: `{eval_file}` not found (`benchmarks/evaluate.py` writes it)."
    ms = bench["median_ms_per_image"]
    net, msf = ms["network_single_scale"], ms.get("network_multiscale_flip", float("nan"))
    where = "the CPU" if bench.get("device", device) == "cpu" else bench.get("device", device)
    size = " × ".join(str(s) for s in bench.get("image_size", []))
    return (f"The network runs in {net:.1f} ms per {size} px image on {where}; "
            f"multi-scale + flip inference, the paper's test protocol, costs {msf / net:.1f} times that. "
            f"Step times come from `{step_file}` and inference times from `{eval_file}`, each measured "
            "side by side in one run.")
