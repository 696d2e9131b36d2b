"""Inference and evaluation of a trained model (single scale; issue 4 adds the other modes).

Logits come out at output stride 8 and are upsampled bilinearly to the full image before the
arg-max, as in the paper's evaluation.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from aafcore.metrics import SegmentationMetrics

__all__ = ["predict_logits", "evaluate_model"]


@torch.no_grad()
def predict_logits(model, images: torch.Tensor) -> torch.Tensor:
    """Full-resolution logits ``[N, C, H, W]`` for images ``[N, 3, H, W]`` (model in eval mode)."""
    logits = model(images)
    return F.interpolate(logits.float(), size=images.shape[-2:], mode="bilinear", align_corners=False)


@torch.no_grad()
def evaluate_model(model, dataset, device: torch.device | str = "cpu", batch_size: int = 8,
                   channels_last: bool = False) -> dict:
    """Single-scale metrics of ``model`` on every image of ``dataset`` (``build_dataset`` items).

    Returns :meth:`SegmentationMetrics.compute` plus ``images`` and ``seconds_per_image`` (network
    inference only, data loading excluded).  Images of different sizes are run one at a time.
    """
    was_training = model.training
    model.eval()
    metrics = SegmentationMetrics(dataset.num_classes, ignore_index=dataset.ignore_index)
    seconds = 0.0
    batch: list[dict] = []

    def flush():
        nonlocal seconds
        images = torch.stack([it["image"] for it in batch]).to(device)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        start = time.perf_counter()
        pred = predict_logits(model, images).argmax(1).cpu()
        seconds += time.perf_counter() - start
        for it, p in zip(batch, pred):
            metrics.update(p, it["label"], it.get("instance"))
        batch.clear()

    for i in range(len(dataset)):
        item = dataset[i]
        if batch and item["image"].shape != batch[0]["image"].shape:
            flush()
        batch.append(item)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    model.train(was_training)
    out = metrics.compute()
    out["images"] = len(dataset)
    out["seconds_per_image"] = seconds / max(len(dataset), 1)
    return out
