"""Evaluating a finished training run again: any split, domain, dataset, multi-scale + flip, CRF.

``aaf evaluate RUN_DIR`` and the evaluation notebook call :func:`evaluate_run`: it rebuilds the
model from the run's recorded config and checkpoint, streams the chosen split through
:func:`aafcore.inference.evaluate_model` and writes ``<run>/eval/<tag>/metrics.json``
(DESIGN.md section 9) with colour-coded predictions.  The inference itself (scales, flips,
sliding windows, CRF) lives in :mod:`aafcore.inference`; its names are re-exported here.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from aafcore.config import TrainConfig, config_from_dict, data_identity, prepare_data, run_name
from aafcore.crf import CRFParams, dense_crf
from aafcore.datasets import build_dataset, denormalize
from aafcore.errors import check_name, one_line
from aafcore.inference import (PAPER_SCALES, PREDICTION_IMAGES, InferenceConfig, evaluate_model, evaluation_result,
                               predict_logits, predict_probs)
from aafcore.metrics import confusion_matrix, mean_iou
from aafcore.models import build_model
from aafcore.runs import (check_writable_dir, digest, file_sha256, finished_result, jsonable, load_checkpoint, locked,
                          provenance, read_json, resolve_device, same_training, skip_message, write_json)

__all__ = ["PAPER_SCALES", "PREDICTION_IMAGES", "InferenceConfig", "predict_logits", "predict_probs",
           "evaluate_model", "evaluate_run", "crf_grid", "evaluation_hash", "evaluation_tag", "evaluation_result", "jsonable"]


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
    return digest(settings)


def _load_run(run: Path) -> tuple[dict, TrainConfig]:
    """The run's own ``metrics.json`` and its config; a one-line error when it is not a finished run."""
    run_metrics = run / "metrics.json"
    if not run.is_dir():
        raise FileNotFoundError(f"run directory not found: {run}")
    if not run_metrics.is_file():
        raise FileNotFoundError(f"{run_metrics} not found: {run} is not a finished training run (if it holds a "
                                f"checkpoint, finish it with aaf train: it continues from there)")
    try:
        trained = read_json(run_metrics)
        return trained, config_from_dict(trained["config"])
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{run_metrics}: not a training result ({one_line(err)})") from None


def _load_data(run: Path, trained: dict, cfg: TrainConfig, dataset: str, split: str, domain: str,
               data_root, progress: bool):
    """The dataset to evaluate on, checked against what the run was trained on (classes, and the
    synthetic benchmark's spec); ``data_root=None`` reads where the run read its data."""
    if data_root is None:   # where the run read its data, or the default (generated if missing)
        recorded = trained.get("provenance", {}).get("data_root")
        data_root = recorded if recorded and Path(recorded).is_dir() else None
    root = prepare_data(dataclasses.replace(cfg, dataset=dataset), data_root, progress=progress)
    data = build_dataset(dataset, root, split=split, domain=domain)
    trained_classes = trained.get("class_names")
    if dataset != cfg.dataset and trained_classes and list(data.class_names) != list(trained_classes):
        raise ValueError(f"dataset {dataset!r} has classes {list(data.class_names)[:3]}... but {run} was trained on "
                         f"{list(trained_classes)[:3]}...: it cannot be evaluated there")
    meta = data_identity(getattr(data, "meta", None))
    recorded_meta = trained.get("provenance", {}).get("data")
    if recorded_meta and meta and meta != recorded_meta:
        raise ValueError(f"the dataset at {root} ({meta.get('generator')}) is not the one {run} was trained "
                         f"on ({recorded_meta.get('generator')}); pass the right --data-root")
    return root, data


def _check_checkpoint(ckpt_path: Path, state: dict, trained: dict, cfg: TrainConfig, sha256: str) -> None:
    """The checkpoint must be the one the run's ``metrics.json`` was computed with: same config,
    the last step, and (when recorded) the same file hash."""
    recorded = state.get("config")
    if not isinstance(recorded, dict) or dataclasses.asdict(config_from_dict(recorded)) != dataclasses.asdict(cfg):
        theirs = recorded.get("method") if isinstance(recorded, dict) else None
        raise ValueError(f"{ckpt_path} was written by another configuration (method {theirs}) than "
                         f"{ckpt_path.parent / 'metrics.json'} records (method {cfg.method}): it cannot be evaluated "
                         f"as this run; retrain it with aaf train ... --force")
    if state.get("step") != cfg.total_steps:
        raise ValueError(f"{ckpt_path} is from step {state.get('step')} of {cfg.total_steps}: the run is not finished; "
                         f"finish it with aaf train (it continues from its checkpoint)")
    expected = trained.get("checkpoint_sha256")
    if expected is not None and sha256 != expected:
        raise ValueError(f"{ckpt_path} is not the checkpoint {ckpt_path.parent / 'metrics.json'} was computed with "
                         f"(sha256 differs): retrain the run with aaf train ... --force")


def _load_model(ckpt_path: Path, trained: dict, cfg: TrainConfig, num_classes: int, device: torch.device):
    """The trained network of a finished run, on ``device``, from its checkpoint; its step and the
    checkpoint file's sha256 (hashed once: checked against the run's and recorded)."""
    state, sha256 = load_checkpoint(ckpt_path), file_sha256(ckpt_path)
    _check_checkpoint(ckpt_path, state, trained, cfg, sha256)
    model = build_model(cfg.base, cfg.backbone, num_classes, fcn_head=cfg.fcn_head)
    model.load_state_dict(state["model"])
    model.to(device)
    if device.type == "cuda" and cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, int(state["step"]), sha256


def evaluate_run(run: str | os.PathLike, split: str = "val", domain: str = "source", *,
                 inference: InferenceConfig = InferenceConfig(), data_root: str | os.PathLike | None = None,
                 device: str = "auto", force: bool = False, progress: bool = True,
                 out_dir: str | os.PathLike | None = None, dataset: str | None = None) -> dict:
    """Evaluate a finished training run and write ``<run>/eval/<tag>/metrics.json`` (DESIGN.md §9).

    The run directory holds the ``metrics.json`` and ``checkpoint.pt`` that ``aaf train`` wrote;
    the model is rebuilt from the recorded config.  An evaluation whose hash (the run's
    ``config_hash`` and the evaluation settings) matches an existing result of the run's current
    training (:func:`aafcore.runs.same_training`) is skipped unless ``force``.  The checkpoint must
    be the run's (same config, final step, the ``checkpoint_sha256`` its ``metrics.json`` records);
    the evaluation records that hash.  The evaluation folder is locked while it is written.  Colour-coded predictions of the first :data:`PREDICTION_IMAGES` images go to
    ``<tag>/predictions/``.  Returns the written dictionary.

    ``dataset`` evaluates on another dataset with the same classes (Table 11: a ``cityscapes`` run
    on ``gta5``, split ``part1``); its ``data_root`` is then required.  Without a window in
    ``inference``, the run's ``eval_crop_size`` / ``eval_stride`` are used (the real-data profiles'
    sliding windows).
    """
    run = Path(run)
    check_name(split, "split")
    trained, cfg = _load_run(run)
    other = dataset if dataset not in (None, cfg.dataset) else None
    if other is not None and data_root is None:
        raise ValueError(f"evaluating {run} (trained on {cfg.dataset}) on dataset {other!r} needs its data_root")
    if inference.crop_size is None and cfg.eval_crop_size is not None:
        inference = dataclasses.replace(inference, crop_size=cfg.eval_crop_size, stride=cfg.eval_stride)
    tag = evaluation_tag(split, domain, inference, other)
    out = Path(out_dir) if out_dir is not None else run / "eval" / tag
    ehash = evaluation_hash(trained.get("config_hash"), split, domain, inference, other)
    previous = None if force else finished_result(out / "metrics.json", "evaluation_hash", ehash)
    if previous is not None and same_training(previous, trained):
        if progress:
            print(skip_message(out / "metrics.json", previous, "evaluation"))
        return previous
    ckpt_path = run / "checkpoint.pt"
    if not ckpt_path.is_file():   # a finished evaluation needs no checkpoint; a new one does
        raise FileNotFoundError(f"{ckpt_path} not found: evaluating needs the run's checkpoint "
                                f"(retrain with `aaf train --profile {cfg.profile} --base {cfg.base} "
                                f"--method {cfg.method} --seed {cfg.seed} --force`)")

    dev = resolve_device(device)
    check_writable_dir(out, "evaluation folder")
    with locked(out, "evaluation"):
        return _evaluate(run, trained, cfg, out, dev, split, domain, inference, data_root, other, tag, ehash, progress)


def _evaluate(run: Path, trained: dict, cfg: TrainConfig, out: Path, dev: torch.device, split: str, domain: str,
              inference: InferenceConfig, data_root, other: str | None, tag: str, ehash: str, progress: bool) -> dict:
    """The evaluation itself (the caller holds ``out``'s lock): data, model, metrics, ``metrics.json``."""
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    t0 = time.perf_counter()
    ckpt_path = run / "checkpoint.pt"
    root, data = _load_data(run, trained, cfg, other or cfg.dataset, split, domain, data_root, progress)
    model, step, sha256 = _load_model(ckpt_path, trained, cfg, data.num_classes, dev)
    ev = evaluate_model(model, data, dev, inference, channels_last=dev.type == "cuda" and cfg.channels_last,
                        predictions_dir=out / "predictions", progress=progress)
    result = evaluation_result(dataclasses.asdict(cfg), run_name(cfg), trained, data, ev, inference, split, domain,
                               started, t0)
    result["evaluation_hash"] = ehash
    result["evaluation"].update(dataset=other or cfg.dataset, tag=tag, checkpoint_step=step,
                                checkpoint_sha256=sha256)
    result["provenance"].update({**provenance(dev), "data_root": str(root),
                                 "training": {k: trained.get("provenance", {}).get(k)
                                              for k in ("git_commit", "started", "wall_seconds")}})
    return write_json(out / "metrics.json", result)


def crf_grid(run: str | os.PathLike, grid: Mapping[str, Sequence[float]], base: CRFParams = CRFParams(), *,
             split: str = "tuning", data_root: str | os.PathLike | None = None, device: str = "cpu",
             out: str | os.PathLike | None = None) -> dict:
    """Tune the dense CRF as DeepLab did: the mIoU on ``split`` of a finished run's network alone
    and after the CRF for every cell of ``grid`` (parameter -> values, e.g. ``{"bi_w": [1, 3, 5],
    "bi_xy_std": [7.5, 15, 30]}``; the other parameters as ``base``), single scale.  Float32 on
    ``device``; the dense CRF runs on the CPU.

    The network's probabilities are computed once per image and every cell post-processes them.
    The chosen cell has the highest mIoU; ties go to the cell nearest ``base`` (sum over the
    grid's parameters of ``|log(value / base value)|``).  Returns (and with ``out`` writes, as
    JSON) ``{"run", "split", "images", "base", "grid", "no_crf_miou", "cells": [{params...,
    "miou"}], "chosen": {params...}, "chosen_miou", "checkpoint_sha256", "seconds", "provenance"}``
    (mIoU in points).
    """
    run = Path(run)
    check_name(split, "split")
    unknown = sorted(set(grid) - set(CRFParams.__dataclass_fields__))
    if unknown or not grid or any(len(v) == 0 for v in grid.values()):
        raise ValueError(f"crf_grid: the grid must map CRF parameters to values, got {dict(grid)!r}")
    t0, started = time.perf_counter(), time.strftime("%Y-%m-%dT%H:%M:%S%z")
    trained, cfg = _load_run(run)
    _, data = _load_data(run, trained, cfg, cfg.dataset, split, "source", data_root, False)
    dev = resolve_device(device)
    model, _, sha256 = _load_model(run / "checkpoint.pt", trained, cfg, data.num_classes, dev)
    model.eval()
    keys = list(grid)
    cells = [dict(zip(keys, (float(v) for v in values))) for values in itertools.product(*grid.values())]
    n = data.num_classes
    plain = np.zeros((n, n), np.int64)
    confs = [np.zeros((n, n), np.int64) for _ in cells]
    for i in range(len(data)):
        item = data[i]
        probs = predict_probs(model, item["image"][None].to(next(model.parameters()).device))[0].cpu().numpy()
        raw = data.load_raw(i)[0] if hasattr(data, "load_raw") else denormalize(item["image"])
        label = np.asarray(item["label"])
        plain += confusion_matrix(probs.argmax(0), label, n, data.ignore_index)
        for cell, conf in zip(cells, confs):
            pred = dense_crf(raw, probs, dataclasses.replace(base, **cell)).argmax(0)
            conf += confusion_matrix(pred, label, n, data.ignore_index)
    rows = [{**cell, "miou": 100 * mean_iou(conf)} for cell, conf in zip(cells, confs)]

    def distance(cell: dict) -> float:
        return sum(abs(math.log(cell[k] / getattr(base, k))) for k in keys)

    best = max(r["miou"] for r in rows)
    chosen = min((r for r in rows if r["miou"] == best), key=distance)
    result = {"run": run.name, "split": split, "images": len(data), "base": base.as_dict(),
              "grid": {k: [float(v) for v in vs] for k, vs in grid.items()}, "no_crf_miou": 100 * mean_iou(plain),
              "cells": rows, "chosen": {k: chosen[k] for k in keys}, "chosen_miou": chosen["miou"],
              "checkpoint_sha256": sha256, "seconds": time.perf_counter() - t0,
              "provenance": {**provenance(dev), "started": started, "threads": torch.get_num_threads()}}
    if out is not None:
        write_json(Path(out), result)
    return result
