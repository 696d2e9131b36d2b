"""Inference and evaluation of a model on a dataset: single scale, multi-scale + flip, sliding
window, dense CRF, and the ``metrics.json`` record of one evaluation.

Inference turns images ``[N, 3, H, W]`` into class probabilities ``[N, C, H, W]`` at full
resolution, the way the authors' ``inference_msc.py`` does:

* the network's logits (output stride 8) are upsampled bilinearly to the size of its input and
  turned into softmax probabilities;
* **sliding window** (``crop_size``): an input larger than the crop is padded at the bottom and
  right with zeros (the mean colour after normalisation) to at least the crop size and covered by
  ``crop_size`` windows ``stride`` apart (default ``2/3`` of the crop); overlapping windows
  average their probabilities;
* **multi-scale + flip** (the paper's test protocol, :data:`PAPER_SCALES` and a left-right
  flip): the image is resized bilinearly to each scale (and flipped), and the probabilities,
  resized back to ``H × W`` (and flipped back), are averaged over all ``scales × flips`` passes.

With one scale and no flip this is ``argmax`` of the upsampled logits (single-scale inference).
:func:`evaluate_model` streams a dataset through inference, the optional dense CRF
(:mod:`aafcore.crf`) and :class:`aafcore.metrics.SegmentationMetrics`; :func:`evaluation_result`
turns its output into the ``metrics.json`` record (DESIGN.md section 9) that training
(:mod:`aafcore.train`) and ``aaf evaluate`` (:mod:`aafcore.evaluate`) both write.  Boundary metrics
are computed at the paper's tolerance and, beside it, at one logit cell (:data:`CELL_PX` pixels,
the ``*_cell`` metrics).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from aafcore.crf import CRFParams, dense_crf
from aafcore.datasets import class_groups, denormalize
from aafcore.errors import check_name
from aafcore.metrics import SegmentationMetrics, group_means
from aafcore.runs import atomic_path

__all__ = ["PAPER_SCALES", "PREDICTION_IMAGES", "CELL_PX", "InferenceConfig", "predict_logits", "predict_probs",
           "save_prediction", "evaluate_model", "evaluation_result"]

PAPER_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
PREDICTION_IMAGES = 8   # colour-coded predictions saved per evaluation: the split's first 8 images
# One logit cell in pixels: the output stride of every model of aafcore (SegmentationModel.output_stride),
# the second boundary tolerance of an evaluation (the paper's 0.0075 x diagonal is half a cell at 384 px).
CELL_PX = 8


@dataclass(frozen=True)
class InferenceConfig:
    """How to turn an image into class probabilities (see the module docstring).

    ``scales``: resize factors averaged over; ``flip``: also average the left-right flipped image;
    ``crop_size``/``stride``: sliding window (``None``: the whole image at once); ``crf``: dense-CRF
    parameters (``None``: no CRF).
    """

    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    crop_size: int | None = None
    stride: int | None = None
    crf: CRFParams | None = None

    def __post_init__(self):
        if not self.scales or any(not s > 0 for s in self.scales):
            raise ValueError(f"scales must be positive, got {list(self.scales)}")
        if self.crop_size is not None and self.crop_size < 8:
            raise ValueError(f"crop_size must be >= 8, got {self.crop_size}")
        if self.stride is not None and (self.crop_size is None or not 1 <= self.stride <= self.crop_size):
            raise ValueError(f"stride must be in [1, crop_size] and needs a crop_size, got {self.stride}")

    @classmethod
    def paper(cls, crop_size: int | None = None, crf: bool = False) -> "InferenceConfig":
        """The paper's test protocol: scales {0.5, ..., 1.75} and left-right flip."""
        return cls(PAPER_SCALES, True, crop_size, None, CRFParams() if crf else None)

    @property
    def mode(self) -> str:
        """``single-scale`` or ``multi-scale+flip`` (or the scales), ``+crf`` when post-processed."""
        if tuple(self.scales) == (1.0,) and not self.flip:
            mode = "single-scale"
        elif tuple(self.scales) == PAPER_SCALES and self.flip:
            mode = "multi-scale+flip"
        else:
            mode = "scales " + ",".join(f"{s:g}" for s in self.scales) + ("+flip" if self.flip else "")
        return mode + ("+crf" if self.crf is not None else "")

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["scales"] = list(self.scales)
        return d


@torch.no_grad()
def predict_logits(model, images: torch.Tensor) -> torch.Tensor:
    """Full-resolution logits ``[N, C, H, W]`` for images ``[N, 3, H, W]`` (model in eval mode)."""
    logits = model(images)
    return F.interpolate(logits.float(), size=images.shape[-2:], mode="bilinear", align_corners=False)


def _window_starts(length: int, crop: int, stride: int) -> list[int]:
    """Window offsets covering ``[0, length)`` with ``crop``-sized windows at most ``stride`` apart."""
    if length <= crop:
        return [0]
    n = math.ceil((length - crop) / stride) + 1
    return sorted({int(round(v)) for v in np.linspace(0, length - crop, n)})


@torch.no_grad()
def _probs_one_pass(model, x: torch.Tensor, crop_size: int | None, stride: int | None) -> torch.Tensor:
    """Softmax probabilities ``[N, C, h, w]`` of images ``x [N, 3, h, w]`` (whole or sliding window)."""
    if crop_size is None:
        return predict_logits(model, x).softmax(1)
    n, _, h, w = x.shape
    ph, pw = max(h, crop_size), max(w, crop_size)
    if (ph, pw) != (h, w):
        x = F.pad(x, (0, pw - w, 0, ph - h))
    stride = stride or max(1, (2 * crop_size) // 3)
    total = count = None
    for top in _window_starts(ph, crop_size, stride):
        for left in _window_starts(pw, crop_size, stride):
            crop = x[:, :, top:top + crop_size, left:left + crop_size]
            p = predict_logits(model, crop).softmax(1)
            if total is None:
                total = x.new_zeros((n, p.shape[1], ph, pw), dtype=torch.float32)
                count = x.new_zeros((1, 1, ph, pw), dtype=torch.float32)
            total[:, :, top:top + crop_size, left:left + crop_size] += p
            count[:, :, top:top + crop_size, left:left + crop_size] += 1
    return (total / count)[:, :, :h, :w]


@torch.no_grad()
def predict_probs(model, images: torch.Tensor, inference: InferenceConfig = InferenceConfig()) -> torch.Tensor:
    """Class probabilities ``[N, C, H, W]`` of images ``[N, 3, H, W]``, averaged over the passes of
    ``inference`` (scales × flips, each whole-image or sliding-window).  ``model`` in eval mode."""
    h, w = images.shape[-2:]
    total = None
    passes = 0
    for scale in inference.scales:
        size = (max(1, int(round(h * scale))), max(1, int(round(w * scale))))
        x = images if size == (h, w) else F.interpolate(images, size=size, mode="bilinear",
                                                        align_corners=False)
        for flipped in ((False, True) if inference.flip else (False,)):
            xi = x.flip(-1) if flipped else x
            p = _probs_one_pass(model, xi, inference.crop_size, inference.stride)
            if flipped:
                p = p.flip(-1)
            if p.shape[-2:] != (h, w):
                p = F.interpolate(p, size=(h, w), mode="bilinear", align_corners=False)
            total = p if total is None else total + p
            passes += 1
    return total / passes


def save_prediction(pred: np.ndarray, palette: np.ndarray, path: Path) -> None:
    """A palette PNG (atomically): pixel values are class ids ``uint8 [H, W]``, the palette colour-codes them."""
    im = Image.fromarray(pred.astype(np.uint8), mode="P")
    pal = np.zeros((256, 3), np.uint8)
    pal[: len(palette)] = np.asarray(palette, np.uint8).reshape(-1, 3)[:256]
    im.putpalette(pal.reshape(-1).tolist())
    with atomic_path(path, suffix=".tmp.png") as tmp:
        im.save(tmp, format="PNG")


@dataclass
class _Stream:
    """The state of one evaluation pass: metrics, where predictions go, and the timers (seconds)."""

    dataset: object
    inference: InferenceConfig
    metrics: SegmentationMetrics
    predictions_dir: Path | None
    prediction_images: int
    timers: dict = field(default_factory=lambda: {"network": 0.0, "crf": 0.0, "metrics": 0.0})

    def add(self, model, batch: list[tuple[int, dict]], device, channels_last: bool) -> None:
        """Infer a batch of same-size items ``(index, item)`` and add them to the metrics."""
        images = torch.stack([it["image"] for _, it in batch]).to(device)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        start = time.perf_counter()
        probs = predict_probs(model, images, self.inference)
        if probs.is_cuda:
            torch.cuda.synchronize(probs.device)
        probs = probs.cpu()
        self.timers["network"] += time.perf_counter() - start
        for (index, it), p in zip(batch, probs):
            pred = self._predict(index, it, p)
            start = time.perf_counter()
            self.metrics.update(pred, it["label"], it.get("instance"))
            self.timers["metrics"] += time.perf_counter() - start
            palette = getattr(self.dataset, "palette", None)
            if self.predictions_dir is not None and index < self.prediction_images and palette is not None:
                save_prediction(pred, palette, self.predictions_dir / f"{check_name(str(it['id']), 'image id')}.png")

    def _predict(self, index: int, item: dict, probs: torch.Tensor) -> np.ndarray:
        """The label map ``[H, W]`` of one item: argmax of ``probs [C, H, W]``, after the CRF if any."""
        if self.inference.crf is None:
            return probs.argmax(0).numpy()
        start = time.perf_counter()
        raw = self.dataset.load_raw(index)[0] if hasattr(self.dataset, "load_raw") else None
        if raw is None:
            raw = denormalize(item["image"])
        pred = dense_crf(raw, probs.numpy(), self.inference.crf).argmax(0)
        self.timers["crf"] += time.perf_counter() - start
        return pred


@torch.no_grad()
def evaluate_model(model, dataset, device: torch.device | str = "cpu",
                   inference: InferenceConfig = InferenceConfig(), batch_size: int = 8,
                   channels_last: bool = False, predictions_dir: str | os.PathLike | None = None,
                   prediction_images: int = PREDICTION_IMAGES, progress: bool = False,
                   boundary_tolerance_px: float | None = CELL_PX) -> dict:
    """Metrics of ``model`` on every image of ``dataset`` (``build_dataset`` items).

    Returns :meth:`SegmentationMetrics.compute` (with the one-cell boundary metrics ``*_cell`` at
    ``boundary_tolerance_px`` pixels, none when it is ``None``) plus ``images``, ``seconds_per_image`` (network
    inference, all passes; data loading excluded), ``crf_seconds_per_image`` (``None`` without
    CRF), ``metric_seconds`` (total) and ``wall_seconds`` (everything).  With ``predictions_dir``
    the first ``prediction_images`` images' predictions are saved there as palette PNGs
    ``<id>.png``.  Consecutive images of the same size are batched (``batch_size``).
    """
    wall = time.perf_counter()
    was_training = model.training
    model.eval()
    if predictions_dir is not None:
        predictions_dir = Path(predictions_dir)
        predictions_dir.mkdir(parents=True, exist_ok=True)
    metrics = SegmentationMetrics(dataset.num_classes, ignore_index=dataset.ignore_index,
                                  boundary_tolerance_px=boundary_tolerance_px)
    stream = _Stream(dataset, inference, metrics, predictions_dir, prediction_images)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(dataset), desc=f"evaluate ({inference.mode})", unit="img", dynamic_ncols=True)
    batch: list[tuple[int, dict]] = []

    def flush():
        stream.add(model, batch, device, channels_last)
        if bar is not None:
            bar.update(len(batch))
        batch.clear()

    try:
        for i in range(len(dataset)):
            item = dataset[i]
            if batch and item["image"].shape != batch[0][1]["image"].shape:
                flush()
            batch.append((i, item))
            if len(batch) == batch_size:
                flush()
        if batch:
            flush()
    finally:
        if bar is not None:
            bar.close()
        model.train(was_training)
    start = time.perf_counter()
    out = stream.metrics.compute()
    if not math.isfinite(out["pixel_accuracy"]):   # no labelled pixel at all: no metric is defined
        split = getattr(dataset, "split", "?")
        raise ValueError(f"the {split} split of {getattr(dataset, 'root', dataset)} ({len(dataset)} images) has no "
                         f"labelled pixel (all are ignore_index {dataset.ignore_index}): nothing to evaluate; "
                         f"check its label files")
    timers = stream.timers
    n = max(len(dataset), 1)
    out.update(images=len(dataset), seconds_per_image=timers["network"] / n,
               crf_seconds_per_image=timers["crf"] / n if inference.crf is not None else None,
               metric_seconds=timers["metrics"] + time.perf_counter() - start,
               wall_seconds=time.perf_counter() - wall)
    return out


def evaluation_result(config: dict, run: str, trained: dict | None, dataset, ev: dict, inference: InferenceConfig,
                      split: str, domain: str, started: str, t0: float) -> dict:
    """The ``metrics.json`` dictionary (DESIGN.md §9) of one evaluation ``ev`` of :func:`evaluate_model`.

    ``config`` is the run's configuration (``dataclasses.asdict``) and ``run`` its name;
    ``trained`` is the training run's own ``metrics.json`` (``None`` while training writes it):
    its ``config_hash`` and ``aaf`` entries are carried over.  Per-group means (``miou_thin``,
    ...) are added for the dataset's class groups.
    """
    ev = dict(ev)
    timing = {k: ev.pop(k) for k in ("images", "seconds_per_image", "crf_seconds_per_image",
                                     "metric_seconds", "wall_seconds")}
    groups = class_groups(dataset)
    group_means(ev, groups)
    result = {
        "config": config,
        "config_hash": (trained or {}).get("config_hash"),
        "run": run,
        "evaluation": {"split": split, "domain": domain, "mode": inference.mode,
                       "images": timing["images"], "inference": inference.as_dict()},
        "provenance": {"started": started, "wall_seconds": time.perf_counter() - t0,
                       "inference_seconds_per_image": timing["seconds_per_image"],
                       "crf_seconds_per_image": timing["crf_seconds_per_image"],
                       "metric_seconds": timing["metric_seconds"],
                       "evaluation_seconds": timing["wall_seconds"]},
        "class_names": list(dataset.class_names),
        "class_groups": groups,
        "metrics": ev,
    }
    if trained and trained.get("aaf") is not None:
        result["aaf"] = trained["aaf"]
    return result
