"""Inference and evaluation: single scale, multi-scale + flip, sliding window, dense CRF.

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
(:mod:`aafcore.crf`) and :class:`aafcore.metrics.SegmentationMetrics`;  :func:`evaluate_run` does it
for a finished training run and writes ``metrics.json`` (``aaf evaluate``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from aafcore.crf import CRFParams, dense_crf
from aafcore.metrics import SegmentationMetrics

__all__ = ["PAPER_SCALES", "InferenceConfig", "predict_logits", "predict_probs", "evaluate_model",
           "evaluate_run", "evaluation_hash", "evaluation_tag", "evaluation_result", "jsonable", "PREDICTION_IMAGES"]

PAPER_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
PREDICTION_IMAGES = 8   # colour-coded predictions saved per evaluation: the split's first 8 images


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


def _save_prediction(pred: np.ndarray, palette: np.ndarray, path: Path) -> None:
    """A palette PNG: pixel values are class ids, the palette colour-codes them."""
    im = Image.fromarray(pred.astype(np.uint8), mode="P")
    pal = np.zeros((256, 3), np.uint8)
    pal[: len(palette)] = np.asarray(palette, np.uint8).reshape(-1, 3)[:256]
    im.putpalette(pal.reshape(-1).tolist())
    tmp = path.with_name(path.name + ".tmp.png")
    im.save(tmp)
    os.replace(tmp, path)


@torch.no_grad()
def evaluate_model(model, dataset, device: torch.device | str = "cpu",
                   inference: InferenceConfig = InferenceConfig(), batch_size: int = 8,
                   channels_last: bool = False, predictions_dir: str | os.PathLike | None = None,
                   prediction_images: int = PREDICTION_IMAGES, progress: bool = False) -> dict:
    """Metrics of ``model`` on every image of ``dataset`` (``build_dataset`` items).

    Returns :meth:`SegmentationMetrics.compute` plus ``images``, ``seconds_per_image`` (network
    inference, all passes; data loading excluded), ``crf_seconds_per_image`` (``None`` without
    CRF), ``metric_seconds`` (total) and ``wall_seconds`` (everything).  With ``predictions_dir``
    the first ``prediction_images`` images' predictions are saved there as palette PNGs
    ``<id>.png``.  Images of different sizes are run one at a time.
    """
    wall = time.perf_counter()
    was_training = model.training
    model.eval()
    metrics = SegmentationMetrics(dataset.num_classes, ignore_index=dataset.ignore_index)
    palette = getattr(dataset, "palette", None)
    if predictions_dir is not None:
        predictions_dir = Path(predictions_dir)
        predictions_dir.mkdir(parents=True, exist_ok=True)
    net_seconds = crf_seconds = metric_seconds = 0.0
    batch: list[tuple[int, dict]] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(dataset), desc=f"evaluate ({inference.mode})", unit="img", dynamic_ncols=True)

    def flush():
        nonlocal net_seconds, crf_seconds, metric_seconds
        images = torch.stack([it["image"] for _, it in batch]).to(device)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        start = time.perf_counter()
        probs = predict_probs(model, images, inference)
        if probs.is_cuda:
            torch.cuda.synchronize(probs.device)
        probs = probs.cpu()
        net_seconds += time.perf_counter() - start
        for (index, it), p in zip(batch, probs):
            if inference.crf is not None:
                start = time.perf_counter()
                raw = dataset.load_raw(index)[0] if hasattr(dataset, "load_raw") else None
                if raw is None:
                    from aafcore.data import denormalize

                    raw = denormalize(it["image"])
                pred = dense_crf(raw, p.numpy(), inference.crf).argmax(0)
                crf_seconds += time.perf_counter() - start
            else:
                pred = p.argmax(0).numpy()
            start = time.perf_counter()
            metrics.update(pred, it["label"], it.get("instance"))
            metric_seconds += time.perf_counter() - start
            if predictions_dir is not None and index < prediction_images and palette is not None:
                _save_prediction(pred, palette, predictions_dir / f"{it['id']}.png")
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
    out = metrics.compute()
    metric_seconds += time.perf_counter() - start
    n = max(len(dataset), 1)
    out["images"] = len(dataset)
    out["seconds_per_image"] = net_seconds / n
    out["crf_seconds_per_image"] = crf_seconds / n if inference.crf is not None else None
    out["metric_seconds"] = metric_seconds
    out["wall_seconds"] = time.perf_counter() - wall
    return out


# --------------------------------------------------------------------------- a finished run


def evaluation_tag(split: str, domain: str, inference: InferenceConfig, dataset: str | None = None) -> str:
    """Directory name of an evaluation under ``<run>/eval/``: e.g. ``test-source-ms-crf``, or
    ``gta5-part1-source-ms-w720`` for a ``dataset`` other than the run's own (Table 11)."""
    tag = (f"{dataset}-" if dataset else "") + f"{split}-{domain}"
    if inference.mode.split("+crf")[0] != "single-scale":
        tag += "-ms" if tuple(inference.scales) == PAPER_SCALES and inference.flip else "-custom"
    if inference.crop_size is not None:
        tag += f"-w{inference.crop_size}"
    return tag + ("-crf" if inference.crf is not None else "")


def evaluation_hash(run_config_hash: str | None, split: str, domain: str, inference: InferenceConfig,
                    dataset: str | None = None) -> str:
    """sha256 (16 hex digits) of what defines an evaluation: the run's config hash and the settings
    (``dataset`` only when it is not the run's own)."""
    settings = {"run_config_hash": run_config_hash, "split": split, "domain": domain,
                "inference": inference.as_dict()}
    if dataset:
        settings["dataset"] = dataset
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def evaluate_run(run: str | os.PathLike, split: str = "val", domain: str = "source", *,
                 inference: InferenceConfig = InferenceConfig(), data_root: str | os.PathLike | None = None,
                 device: str = "auto", force: bool = False, progress: bool = True,
                 out_dir: str | os.PathLike | None = None, dataset: str | None = None) -> dict:
    """Evaluate a finished training run and write ``<run>/eval/<tag>/metrics.json`` (DESIGN.md §9).

    The run directory holds the ``metrics.json`` and ``checkpoint.pt`` that ``aaf train`` wrote;
    the model is rebuilt from the recorded config.  An evaluation whose hash (the run's
    ``config_hash`` and the evaluation settings) matches an existing result is skipped unless
    ``force``.  Colour-coded predictions of the first :data:`PREDICTION_IMAGES` images go to
    ``<tag>/predictions/``.  Returns the written dictionary.

    ``dataset`` evaluates on another dataset with the same classes (Table 11: a ``cityscapes`` run
    on ``gta5``, split ``part1``); its ``data_root`` is then required.  Without a window in
    ``inference``, the run's ``eval_crop_size`` / ``eval_stride`` are used (the real-data profiles'
    sliding windows).
    """
    from aafcore.cli import environment
    from aafcore.models import build_model
    from aafcore.data import build_dataset
    from aafcore.train import TrainConfig, _atomic_write_text, git_commit, prepare_data

    run = Path(run)
    run_metrics, ckpt_path = run / "metrics.json", run / "checkpoint.pt"
    if not run.is_dir():
        raise FileNotFoundError(f"run directory not found: {run}")
    if not run_metrics.is_file():
        raise FileNotFoundError(f"{run_metrics} not found: {run} is not a finished training run")
    try:
        trained = json.loads(run_metrics.read_text())
        fields = {f.name for f in dataclasses.fields(TrainConfig)}
        cfg = TrainConfig(**{k: v for k, v in trained["config"].items() if k in fields}).validate()
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{run_metrics}: not a training result ({' '.join(str(err).split())})") from None
    other = dataset if dataset not in (None, cfg.dataset) else None
    if other is not None and data_root is None:
        raise ValueError(f"evaluating {run} (trained on {cfg.dataset}) on dataset {other!r} needs its data_root")
    if inference.crop_size is None and cfg.eval_crop_size is not None:
        inference = dataclasses.replace(inference, crop_size=cfg.eval_crop_size, stride=cfg.eval_stride)

    tag = evaluation_tag(split, domain, inference, other)
    out = Path(out_dir) if out_dir is not None else run / "eval" / tag
    ehash = evaluation_hash(trained.get("config_hash"), split, domain, inference, other)
    metrics_path = out / "metrics.json"
    if metrics_path.exists() and not force:
        previous = json.loads(metrics_path.read_text())
        if previous.get("evaluation_hash") == ehash:
            if progress:
                print(f"{metrics_path}: finished evaluation with the same settings, skipped (use --force)")
            return previous
    if not ckpt_path.is_file():   # a finished evaluation needs no checkpoint; a new one does
        raise FileNotFoundError(f"{ckpt_path} not found: evaluating needs the run's checkpoint "
                                f"(retrain with `aaf train --profile {cfg.profile} --base {cfg.base} "
                                f"--method {cfg.method} --seed {cfg.seed} --force`)")

    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    t0 = time.perf_counter()
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    dev = torch.device("cuda" if use_cuda else "cpu")
    if data_root is None:   # where the run read its data, or the default (generated if missing)
        recorded = trained.get("provenance", {}).get("data_root")
        data_root = recorded if recorded and Path(recorded).is_dir() else None
    root = prepare_data(dataclasses.replace(cfg, dataset=other or cfg.dataset), data_root, progress=progress)
    dataset = build_dataset(other or cfg.dataset, root, split=split, domain=domain)
    trained_classes = trained.get("class_names")
    if other is not None and trained_classes and list(dataset.class_names) != list(trained_classes):
        raise ValueError(f"dataset {other!r} has classes {list(dataset.class_names)[:3]}... but {run} was trained on "
                         f"{list(trained_classes)[:3]}...: it cannot be evaluated there")
    meta = {k: v for k, v in (getattr(dataset, "meta", None) or {}).items() if k in ("spec", "generator")}
    recorded_meta = trained.get("provenance", {}).get("data")
    if recorded_meta and meta and meta != recorded_meta:
        raise ValueError(f"the dataset at {root} ({meta.get('generator')}) is not the one {run} was trained "
                         f"on ({recorded_meta.get('generator')}); pass the right --data-root")
    state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    if state.get("step") != cfg.total_steps:
        raise ValueError(f"{ckpt_path} is from step {state.get('step')} of {cfg.total_steps}: the run is not finished "
                         f"(continue it with aaf train --resume)")
    model = build_model(cfg.base, cfg.backbone, dataset.num_classes)
    model.load_state_dict(state["model"])
    model.to(dev)
    channels_last = use_cuda and cfg.channels_last
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    out.mkdir(parents=True, exist_ok=True)
    ev = evaluate_model(model, dataset, dev, inference, channels_last=channels_last,
                        predictions_dir=out / "predictions", progress=progress)
    result = evaluation_result(cfg, trained, dataset, ev, inference, split, domain, started, t0)
    result["evaluation_hash"] = ehash
    result["evaluation"]["dataset"] = other or cfg.dataset
    result["evaluation"]["tag"] = tag
    result["evaluation"]["checkpoint_step"] = int(state["step"])
    result["provenance"].update({"git_commit": git_commit(), "packages": environment(),
                                 "device": torch.cuda.get_device_name(dev) if use_cuda else "cpu",
                                 "data_root": str(root),
                                 "training": {k: trained.get("provenance", {}).get(k)
                                              for k in ("git_commit", "started", "wall_seconds")}})
    result = jsonable(result)
    _atomic_write_text(metrics_path, json.dumps(result, indent=1, allow_nan=False))
    return result


def jsonable(obj):
    """``obj`` with every float ``nan``/``inf`` replaced by ``None`` (JSON ``null``; strict JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj


def evaluation_result(cfg, trained: dict | None, dataset, ev: dict, inference: InferenceConfig,
                      split: str, domain: str, started: str, t0: float) -> dict:
    """The ``metrics.json`` dictionary (DESIGN.md §9) of one evaluation ``ev`` of ``evaluate_model``.

    ``trained`` is the training run's own ``metrics.json`` (``None`` while training writes it):
    its ``config_hash``, ``run`` and ``aaf`` entries are carried over.
    """
    from aafcore.train import _class_groups, run_name, summarise

    ev = dict(ev)
    timing = {k: ev.pop(k) for k in ("images", "seconds_per_image", "crf_seconds_per_image",
                                     "metric_seconds", "wall_seconds")}
    summarise(ev, dataset)
    result = {
        "config": dataclasses.asdict(cfg),
        "config_hash": (trained or {}).get("config_hash"),
        "run": run_name(cfg),
        "evaluation": {"split": split, "domain": domain, "mode": inference.mode,
                       "images": timing["images"], "inference": inference.as_dict()},
        "provenance": {"started": started, "wall_seconds": time.perf_counter() - t0,
                       "inference_seconds_per_image": timing["seconds_per_image"],
                       "crf_seconds_per_image": timing["crf_seconds_per_image"],
                       "metric_seconds": timing["metric_seconds"],
                       "evaluation_seconds": timing["wall_seconds"]},
        "class_names": list(dataset.class_names),
        "class_groups": _class_groups(dataset),
        "metrics": ev,
    }
    if trained and trained.get("aaf") is not None:
        result["aaf"] = trained["aaf"]
    return result
