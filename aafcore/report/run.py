"""One run or one evaluation, as ``notebooks/train.ipynb`` and ``notebooks/evaluate.ipynb`` show it:
``result`` is the dict that ``aafcore.train.train`` / ``aafcore.evaluate.evaluate_run`` return and
write to ``metrics.json`` (DESIGN.md section 9)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from aafcore.report.tables import MISSING, table

__all__ = ["per_class_frame", "run_summary", "metrics_sentence", "metrics_summary", "evaluation_time_sentence"]

# per-class metric -> column: every one a fraction, shown in percent
_PER_CLASS = (("iou", "IoU %"), ("instance_iou", "instance IoU %"), ("boundary_precision", "boundary precision %"),
              ("boundary_recall", "boundary recall %"), ("boundary_f", "boundary F %"))
# the same boundary metrics at one logit cell (metrics.json written before they existed lack them)
_PER_CLASS_CELL = (("boundary_precision_cell", "boundary precision %"), ("boundary_recall_cell", "boundary recall %"),
                   ("boundary_f_cell", "boundary F %"))
# the scalar metrics' names (a group's mean and the one-cell tolerance are suffixes of these)
_SCALARS = {"miou": "mIoU", "pixel_accuracy": "pixel accuracy", "instance_miou": "instance mIoU",
            "mean_boundary_precision": "boundary precision", "mean_boundary_recall": "boundary recall",
            "mean_boundary_f": "boundary F"}
# scalar entries of the metrics that are settings, not fractions
_SETTINGS = ("boundary_tolerance_px",)
DIGITS = 2     # decimals of a percentage on a run's page


def _cell_label(metrics: dict) -> str:
    """How the one-cell boundary tolerance is named: ``8 px`` (``cell`` when not recorded)."""
    tolerance = metrics.get("boundary_tolerance_px")
    return "cell" if tolerance is None else f"{tolerance:g} px"


def _percent(values) -> list[float]:
    return [np.nan if v is None else 100.0 * v for v in values]


def per_class_frame(result: dict) -> pd.DataFrame:
    """The per-class table of a run's page, as the book shows it: one row per class, IoU %, instance
    IoU %, boundary precision, recall and F (%), the same boundary metrics at one logit cell
    (columns ``boundary recall % (8 px)``, ...) when the result has them, and for an AAF run the
    effective kernel size of the edge term (px).  Values are text with :data:`DIGITS` decimals
    (:func:`~aafcore.report.tables.table`); a missing value (a stuff class has no instances, a
    class never predicted has no boundary precision) is "–"; metrics the result does not have are
    left out."""
    m = result["metrics"]
    frame = pd.DataFrame(index=result["class_names"])
    cell = _cell_label(m)
    for key, column in _PER_CLASS + tuple((k, f"{c} ({cell})") for k, c in _PER_CLASS_CELL):
        if key in m:
            frame[column] = _percent(m[key])
    if result.get("aaf"):
        frame["effective kernel size"] = result["aaf"]["effective_kernel_size"]
    return table(frame, DIGITS)


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
    instance mIoU 25.14%, boundary recall 14.02%.`` (markdown)."""
    m = result["metrics"]
    groups = ", ".join(f"{k[5:]} classes {100 * v:.{DIGITS}f}%" for k, v in m.items()
                       if k.startswith("miou_") and v is not None)
    instance = f", instance mIoU {100 * m['instance_miou']:.{DIGITS}f}%" if m.get("instance_miou") is not None else ""
    return (f"**mIoU {100 * m['miou']:.{DIGITS}f}%**" + (f" ({groups})" if groups else "")
            + f", pixel accuracy {100 * m['pixel_accuracy']:.{DIGITS}f}%{instance}, "
            f"boundary recall {100 * m['mean_boundary_recall']:.{DIGITS}f}%.")


def _split_key(key: str, groups: list[str], cell: str) -> tuple[str, str]:
    """``mean_boundary_recall_cell_thin`` -> (``boundary recall (8 px)``, ``thin``); ``miou`` -> (``mIoU``, ``all``)."""
    group = next((g for g in groups if key.endswith(f"_{g}")), None)
    if group is not None:
        key = key[: -len(group) - 1]
    one_cell = key.endswith("_cell")
    name = _SCALARS.get(key[: -len("_cell")] if one_cell else key, key)
    return (f"{name} ({cell})" if one_cell else name), (group or "all")


def metrics_summary(result: dict) -> pd.DataFrame:
    """Every scalar metric of the result in percent, as the book shows it: one row per metric (mIoU,
    pixel accuracy, instance mIoU, boundary precision, recall and F, and at one logit cell
    ``boundary recall (8 px)``, ...; the result's order), one column for all classes (``all``) and
    one per class group of the result (``large``, ``thin``: its ``miou_<group>`` entries), text
    with :data:`DIGITS` decimals and "–" where a value is missing or a metric has no group mean
    (settings such as ``boundary_tolerance_px`` left out)."""
    m = result["metrics"]
    groups = [k[len("miou_"):] for k in m if k.startswith("miou_")]
    cell = _cell_label(m)
    rows: dict[str, dict[str, float]] = {}
    for key, value in m.items():
        if isinstance(value, list) or key in _SETTINGS:
            continue
        name, group = _split_key(key, groups, cell)
        rows.setdefault(name, {})[group] = np.nan if value is None else 100.0 * value
    frame = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=["all", *groups])
    return table(frame, DIGITS)


def evaluation_time_sentence(result: dict) -> str:
    """``Network: 6.2 ms per image; dense CRF: 49.4 ms per image more; all metrics: 0.31 s for 200
    images.``: an evaluation's run time."""
    prov = result["provenance"]
    crf_ms = prov.get("crf_seconds_per_image")
    return (f"Network: {1000 * prov['inference_seconds_per_image']:.1f} ms per image"
            + (f"; dense CRF: {1000 * crf_ms:.1f} ms per image more" if crf_ms else "")
            + f"; all metrics: {prov['metric_seconds']:.2f} s for {result['evaluation']['images']} images.")
