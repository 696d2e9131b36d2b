"""One run or one evaluation, as ``notebooks/train.ipynb`` and ``notebooks/evaluate.ipynb`` show it:
``result`` is the dict that ``aafcore.train.train`` / ``aafcore.evaluate.evaluate_run`` return and
write to ``metrics.json`` (DESIGN.md section 9)."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["per_class_frame", "run_summary", "metrics_sentence", "metrics_summary", "evaluation_time_sentence"]

# per-class metric -> (column, scale): IoU in %, boundary 0-1, as the paper prints them
_PER_CLASS = (("iou", "IoU %", 100.0), ("instance_iou", "instance IoU %", 100.0),
              ("boundary_precision", "boundary precision", 1.0), ("boundary_recall", "boundary recall", 1.0),
              ("boundary_f", "boundary F", 1.0))
# the same boundary metrics at one logit cell (metrics.json written before they existed lacks them)
_PER_CLASS_CELL = (("boundary_precision_cell", "boundary precision"), ("boundary_recall_cell", "boundary recall"),
                   ("boundary_f_cell", "boundary F"))
# scalar entries of the metrics that are settings, not fractions
_SETTINGS = ("boundary_tolerance_px",)


def per_class_frame(result: dict) -> pd.DataFrame:
    """One row per class: IoU %, instance IoU %, boundary precision, recall and F (0-1), the same
    boundary metrics at one logit cell (columns ``boundary recall (8 px)``, ...) when the result
    has them, and for an AAF run the effective kernel size of the edge term.  Missing values (a
    stuff class has no instances) are NaN; metrics the result does not have are left out."""
    m = result["metrics"]
    frame = pd.DataFrame(index=result["class_names"])
    tolerance = m.get("boundary_tolerance_px")
    cell = "cell" if tolerance is None else f"{tolerance:g} px"
    for key, column, scale in _PER_CLASS + tuple((k, f"{c} ({cell})", 1.0) for k, c in _PER_CLASS_CELL):
        if key in m:
            frame[column] = [np.nan if v is None else scale * v for v in m[key]]
    if result.get("aaf"):
        frame["effective kernel size"] = result["aaf"]["effective_kernel_size"]
    return frame


def run_summary(result: dict) -> pd.DataFrame:
    """A training run's provenance and settings, one ``value`` per row: config hash, git commit,
    device, start, training minutes, median step (ms), images / s, steps, batch, crop and lr.
    A timing a run does not have (resumed at its last step: no step was timed) is ``n/a``."""
    prov, cfg = result["provenance"], result["config"]

    def rounded(value, scale: float, digits: int):
        return "n/a" if value is None else round(scale * value, digits)

    return pd.Series({"config hash": result["config_hash"], "git commit": prov["git_commit"],
                      "device": prov["device"], "started": prov["started"],
                      "training minutes": rounded(prov["train_seconds"], 1 / 60, 2),
                      "median step (ms)": rounded(prov.get("median_step_seconds"), 1000, 1),
                      "images / s": rounded(prov.get("images_per_second"), 1, 1),
                      "steps": cfg["steps"], "batch": cfg["batch_size"], "crop": cfg["crop_size"], "lr": cfg["lr"]},
                     name="value").to_frame()


def metrics_sentence(result: dict) -> str:
    """``**mIoU 40.61%** (large classes 65.43%, thin classes 15.80%), pixel accuracy 80.49%,
    instance mIoU 25.14%, boundary recall 0.140.`` (markdown)."""
    m = result["metrics"]
    groups = ", ".join(f"{k[5:]} classes {100 * v:.2f}%" for k, v in m.items()
                       if k.startswith("miou_") and v is not None)
    instance = f", instance mIoU {100 * m['instance_miou']:.2f}%" if m.get("instance_miou") is not None else ""
    return (f"**mIoU {100 * m['miou']:.2f}%**" + (f" ({groups})" if groups else "")
            + f", pixel accuracy {100 * m['pixel_accuracy']:.2f}%{instance}, "
            f"boundary recall {m['mean_boundary_recall']:.3f}.")


def metrics_summary(result: dict) -> pd.DataFrame:
    """Every scalar metric of the result (means, group means, pixel accuracy) as fractions, one
    ``value`` per row, in the result's order (settings such as ``boundary_tolerance_px`` left out)."""
    return pd.Series({k: v for k, v in result["metrics"].items() if not isinstance(v, list) and k not in _SETTINGS},
                     name="value").to_frame()


def evaluation_time_sentence(result: dict) -> str:
    """``Network: 6.2 ms per image; dense CRF: 49.4 ms per image more; all metrics: 0.31 s for 200
    images.``: an evaluation's run time."""
    prov = result["provenance"]
    crf_ms = prov.get("crf_seconds_per_image")
    return (f"Network: {1000 * prov['inference_seconds_per_image']:.1f} ms per image"
            + (f"; dense CRF: {1000 * crf_ms:.1f} ms per image more" if crf_ms else "")
            + f"; all metrics: {prov['metric_seconds']:.2f} s for {result['evaluation']['images']} images.")
