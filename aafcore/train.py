"""One trainer for every method of the paper: ``baseline``, ``affinity``, ``aaf``, ``emb``, ``gan``.

Read top to bottom like torchvision's ``references/segmentation``: the sample order, a
:class:`Trainer` that owns the model, its optimiser and the method's objective
(:mod:`aafcore.objectives`) and does one step, and :func:`train`, which runs the loop and writes
the checkpoint, the training log and ``metrics.json``.  The configuration is
:class:`aafcore.config.TrainConfig`.

The objective (DESIGN.md section 5), with ``t`` the step and ``T`` the number of steps::

    loss = CE(logits, y↓) + 10^(-t/T) · L_aux(...)          y↓: labels nearest-downsampled to the logits

* ``L_aux`` is the method's (:data:`aafcore.objectives.OBJECTIVES`): none, the affinity field,
  AAF (whose weight logits are *maximised*), the pixel embedding or the GAN's adversarial loss.
* Poly learning rate ``lr · (1 - t/T)^0.9``; momentum 0.9; weight decay 5e-4 on convolution and
  linear weights (not on batch-norm parameters or biases); the head learns 10x faster.

Determinism and resuming: the samples of step ``t`` and their augmentation are a pure function
of ``(seed, t)`` (an epoch-wise permutation and a per-sample generator), and the checkpoint holds
every optimiser and the torch random state, so a run resumed from step ``k`` is bit-identical
on the CPU (same thread count) to one that never stopped.

Several processes: under ``torchrun`` every rank takes its slice of the same global batch with
synchronised batch norm (:mod:`aafcore.distributed`); only rank 0 evaluates and writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from aafcore import losses
from aafcore.config import (BASES, METHODS, PROFILES, TrainConfig, check_weights, config_hash, data_identity,
                            default_data_root, load_config, overrides, prepare_data, profile_config, run_dir, run_name)
from aafcore.datasets import SYNTHETIC_PROFILES, TrainAugment, build_dataset, class_groups, synthetic_meta
from aafcore.distributed import (CPUSyncBatchNorm, convert_sync_batchnorm, dist_info, init_process_group,
                                 torchrun_command)
from aafcore.errors import NonFiniteError
from aafcore.inference import InferenceConfig, evaluate_model, evaluation_result
from aafcore.models import build_model
from aafcore.objectives import build_objective
from aafcore.metrics import group_means
from aafcore.runs import (atomic_save, atomic_write_text, check_writable_dir, device_name, file_sha256, git_commit,
                          jsonable, load_checkpoint, locked, read_json, resolve_device, skip_message, truncate_log,
                          write_json)
from aafcore.runs import provenance as run_provenance
from aafcore.safety import (ReproducibilityWarning, DeferredInterrupt, all_finite, check_numerics, claim_folder,
                            divergence_error)

__all__ = ["Trainer", "train", "train_distributed", "ReproducibilityWarning",
           # re-exported from their homes, where they were defined before (aafcore.config, .distributed)
           "METHODS", "BASES", "PROFILES", "TrainConfig", "profile_config", "load_config", "run_dir", "run_name",
           "config_hash", "prepare_data", "default_data_root", "torchrun_command", "CPUSyncBatchNorm",
           "convert_sync_batchnorm", "git_commit"]


# --------------------------------------------------------------------------- data order


def _step_samples(step: int, batch_size: int, n: int, seed: int, stage: int = 0) -> list[tuple[int, int]]:
    """The global batch of ``step``: ``(index, augmentation seed)`` pairs, a pure function of its args.

    The sample stream is an epoch-wise random permutation of the ``n`` training images; sample
    ``b`` of step ``t`` is element ``t·B + b`` of that stream.  ``step`` counts within its
    ``stage`` (1 = fine-tuning), which has a stream of its own.
    """
    tail = [stage] if stage else []
    out = []
    for b in range(batch_size):
        pos = step * batch_size + b
        epoch, within = divmod(pos, n)
        perm = np.random.default_rng([seed, epoch, *tail]).permutation(n)
        aug_seed = int(np.random.SeedSequence([seed, step, b, *tail]).generate_state(1, np.uint64)[0] >> 1)
        out.append((int(perm[within]), aug_seed))
    return out


class _AugmentedSamples(torch.utils.data.Dataset):
    """``samples[(stage, index, seed)]`` → augmented ``(image, label)`` of ``datasets[stage][index]``,
    the augmentation seeded by ``seed``."""

    def __init__(self, datasets, augment):
        self.datasets, self.augment = datasets, augment

    def __len__(self):
        return len(self.datasets[0])

    def __getitem__(self, key):
        stage, index, seed = key
        item = self.augment(self.datasets[stage][index], torch.Generator().manual_seed(seed))
        return item["image"], item["label"]


class _StepBatches(torch.utils.data.Sampler):
    """Yields this rank's part of the global batch for steps ``start, ..., total_steps - 1``;
    ``sizes[stage]`` is the number of training images of each stage."""

    def __init__(self, cfg: TrainConfig, sizes: list[int], start: int, rank: int, world: int):
        self.cfg, self.sizes, self.start, self.rank, self.world = cfg, sizes, start, rank, world

    def __len__(self):
        return self.cfg.total_steps - self.start

    def __iter__(self):
        per_rank = self.cfg.batch_size // self.world
        for step in range(self.start, self.cfg.total_steps):
            stage = int(step >= self.cfg.steps)
            local = step - stage * self.cfg.steps
            samples = _step_samples(local, self.cfg.batch_size, self.sizes[stage], self.cfg.seed, stage)
            yield [(stage, i, s) for i, s in samples[self.rank * per_rank:(self.rank + 1) * per_rank]]


# --------------------------------------------------------------------------- the trainer


class Trainer:
    """Model, optimiser and objective of one run, and :meth:`step`, one training iteration.

    ``step(images [N,3,H,W], labels [N,H,W], t)`` returns a dict of floats (``loss``, ``ce``,
    ``aux``, ``decay``, ``lr`` and, for ``gan``, ``d_loss``).  ``objective`` is the method's
    :class:`aafcore.objectives.Objective`.
    """

    def __init__(self, cfg: TrainConfig, num_classes: int, device: torch.device | str = "cpu",
                 ignore_index: int = 255, distributed: bool = False):
        self.cfg = cfg
        self.device = torch.device(device)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.distributed = distributed
        self.cuda = self.device.type == "cuda"
        self.amp = cfg.amp and self.cuda

        torch.manual_seed(cfg.seed)
        model = build_model(cfg.base, cfg.backbone, num_classes, pretrained=cfg.pretrained, fcn_head=cfg.fcn_head)
        if distributed:
            model = convert_sync_batchnorm(model, self.device)
        backbone_params, head_params = list(model.backbone_parameters()), list(model.head_parameters())
        model.to(self.device)
        if self.cuda and cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.net = model
        if distributed:
            self.net = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.cuda else None)
        self.optimizer = torch.optim.SGD(self._groups(backbone_params, cfg.lr)
                                         + self._groups(head_params, cfg.lr * cfg.head_lr_mult),
                                         lr=cfg.lr, momentum=cfg.momentum)
        # after the model: the GAN's discriminator draws its initial weights from the same generator
        self.objective = build_objective(cfg, num_classes, ignore_index, self.device)

    def _groups(self, params, lr: float) -> list[dict]:
        """Parameter groups at ``lr``: weight decay on weights (ndim > 1), none on biases and norms."""
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        return [{"params": decay, "lr": lr, "initial_lr": lr, "weight_decay": self.cfg.weight_decay},
                {"params": no_decay, "lr": lr, "initial_lr": lr, "weight_decay": 0.0}]

    def _optimizers(self):
        return [opt for opt in (self.optimizer, self.objective.optimizer) if opt is not None]

    # -- schedule
    def stage(self, t: int) -> tuple[int, int, int]:
        """``(stage, step within the stage, steps of the stage)``; stage 1 is the fine-tuning."""
        if t < self.cfg.steps:
            return 0, t, self.cfg.steps
        return 1, t - self.cfg.steps, self.cfg.finetune_steps

    def base_lr(self, t: int) -> float:
        """``lr`` in the first stage, ``finetune_lr`` in the second."""
        return self.cfg.lr if t < self.cfg.steps else self.cfg.finetune_lr

    def lr_factor(self, t: int) -> float:
        """Poly schedule ``(1 - k/T)^power`` of step ``k`` of a stage of ``T`` steps."""
        _, k, n = self.stage(t)
        return (1.0 - k / n) ** self.cfg.poly_power

    def decay(self, t: int) -> float:
        """Weight of the auxiliary loss, ``10^(-k/T)`` within the stage (1 when ``loss_decay`` is off)."""
        _, k, n = self.stage(t)
        return 10.0 ** (-k / n) if self.cfg.loss_decay else 1.0

    def _set_learning_rates(self, t: int) -> float:
        """Poly-scheduled learning rates of step ``t`` (fresh optimiser states at the second stage's
        start); returns the factor ``(1 - k/T)^power``."""
        cfg = self.cfg
        if cfg.finetune_steps and t == cfg.steps:
            for opt in self._optimizers():
                opt.state.clear()
        scale, factor = self.base_lr(t) / cfg.lr, self.lr_factor(t)
        scheduled = [self.optimizer] + ([self.objective.optimizer] if self.objective.follows_schedule else [])
        for opt in scheduled:
            for g in opt.param_groups:
                g["lr"] = g["initial_lr"] * scale * factor
        return factor

    def _cross_entropy(self, logits: torch.Tensor, small: torch.Tensor) -> torch.Tensor:
        if not self.distributed:
            return F.cross_entropy(logits, small, ignore_index=self.ignore_index)
        # mean over the valid pixels of the *global* batch, as one process would compute it
        # (DDP averages the gradients over processes, hence the factor world size)
        count = (small != self.ignore_index).sum().float()
        dist.all_reduce(count)
        ce = F.cross_entropy(logits, small, ignore_index=self.ignore_index, reduction="sum")
        return ce * dist.get_world_size() / count.clamp_min(1)

    def step(self, images: torch.Tensor, labels: torch.Tensor, t: int) -> dict:
        factor = self._set_learning_rates(t)
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        if self.cuda and self.cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        self.net.train()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            out = self.net(images, with_features=self.objective.with_features)
        logits, features = out if isinstance(out, tuple) else (out, None)
        logits = logits.float()
        small = losses.downsample_labels(labels, tuple(logits.shape[-2:]))
        ce = self._cross_entropy(logits, small)
        decay = self.decay(t)
        aux = self.objective.loss(logits, features, small)
        loss = ce + decay * aux
        for opt in self._optimizers():
            opt.zero_grad(set_to_none=True)
        loss.backward()
        self.objective.before_network_step(self.distributed)
        self.optimizer.step()
        d_loss = self.objective.after_network_step(self.distributed)
        values = torch.stack([v.detach().float() for v in (loss, ce, aux, d_loss if d_loss is not None else aux)])
        if self.distributed:  # log the global batch: the mean of the processes' losses
            dist.all_reduce(values)
            values /= dist.get_world_size()
        values = values.tolist()
        record = {"loss": values[0], "ce": values[1], "aux": values[2], "decay": decay, "lr": self.base_lr(t) * factor}
        if d_loss is not None:
            record["d_loss"] = values[3]
        return record

    def finite(self, parameters: bool = True) -> bool:
        """Whether every batch-norm buffer and, with ``parameters``, every parameter (the network's and
        the objective's) is finite: one reduction, one synchronisation.

        The loop checks the buffers after every step (a few thousand numbers: running statistics
        are the one state a finite loss does not vouch for, since training-mode batch norm does not
        read them) and everything at each checkpoint (:func:`aafcore.safety.all_finite`)."""
        buffers = [b.view(-1) for b in self.model.buffers() if b.is_floating_point()]
        if buffers and not bool(torch.cat(buffers).isfinite().all()):   # one small copy: ~0.1 ms on the cpu profile
            return False
        if not parameters:
            return True
        params = [p.detach() for opt in self._optimizers() for g in opt.param_groups for p in g["params"]]
        return bool(torch.stack([p.isfinite().all() for p in params]).all())

    def numerics(self) -> dict:
        """What a bit-identical resume needs to be the same (recorded in the checkpoint): thread
        count, float32 matmul precision, the CPU's SIMD kernels, the device."""
        return {"cpu_threads": torch.get_num_threads(),
                "float32_matmul_precision": torch.get_float32_matmul_precision(),
                "cpu_capability": torch.backends.cpu.get_cpu_capability(), "device": device_name(self.device)}

    # -- checkpoints
    def state_dict(self, step: int) -> dict:
        state = {"step": step, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "torch_rng": torch.get_rng_state(), "config": dataclasses.asdict(self.cfg),
                 "numerics": self.numerics()}
        if self.cuda:
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        state.update(self.objective.state_dict())
        return state

    def load_state_dict(self, state: dict) -> int:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        if self.cuda and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self.objective.load_state_dict(state)
        return int(state["step"])


# --------------------------------------------------------------------------- the loop


@dataclass
class _Data:
    """The datasets of a run: ``stages`` (training sets of stage 0 and the optional fine-tuning
    stage 1), ``val``, their ``root`` and ``identity`` (:func:`aafcore.config.data_identity`)."""

    root: Path
    stages: list
    val: object
    identity: dict
    monitor: object = None     # the learning curve's split (``monitor_every``), or None


def _load_data(cfg: TrainConfig, data_root, rank: int, distributed: bool, progress: bool) -> _Data:
    """Rank 0 prepares (generates) the data first; the other ranks wait, then read it.  A synthetic
    benchmark of another profile than the config's (``--profile cpu`` on smoke data) is warned about."""
    root = prepare_data(cfg, data_root, progress=progress) if rank == 0 else None
    if distributed:
        dist.barrier()
    if rank != 0:
        root = prepare_data(cfg, data_root, progress=False)
    stages = [build_dataset(cfg.dataset, root, split=cfg.train_split)]
    if cfg.finetune_steps:
        stages.append(build_dataset(cfg.dataset, root, split=cfg.finetune_split))
    val = build_dataset(cfg.dataset, root, split=cfg.val_split)
    identity = data_identity(getattr(stages[0], "meta", None))
    monitor = build_dataset(cfg.dataset, root, split=cfg.monitor_split) if cfg.monitor_every else None
    if rank == 0 and cfg.dataset == "synthetic" and cfg.profile in SYNTHETIC_PROFILES:
        specs = {name: data_identity(synthetic_meta(spec)).get("spec") for name, spec in SYNTHETIC_PROFILES.items()}
        if identity.get("spec") != specs[cfg.profile]:
            theirs = next((name for name, spec in specs.items() if spec == identity.get("spec")), "another")
            warnings.warn(f"the data at {root} is the {theirs!r} synthetic benchmark, not the {cfg.profile!r} "
                          f"profile's: the run trains on it (its config hash records the data)", UserWarning,
                          stacklevel=3)
    return _Data(root, stages, val, identity, monitor)


def _resume(trainer: Trainer, cfg: TrainConfig, out: Path, resume: bool | None, rank: int) -> int:
    """The step to start from: the checkpoint's when the folder holds one of this config (its log cut
    back to it), else 0 (the old log removed); ``resume=True`` without a checkpoint says so."""
    ckpt_path, log_path = out / "checkpoint.pt", out / "train_log.jsonl"
    start = 0
    if ckpt_path.exists():
        state = load_checkpoint(ckpt_path, map_location=trainer.device)
        if state.get("config") != dataclasses.asdict(cfg):
            raise ValueError(f"{ckpt_path} was written by another configuration: pass --force to start over, "
                             f"or --out DIR to train this one elsewhere")
        if rank == 0:
            check_numerics(state.get("numerics"), trainer.numerics(), ckpt_path)
        start = trainer.load_state_dict(state)
    elif resume and rank == 0:
        print(f"{out}: no checkpoint to resume from; starting at step 0", file=sys.stderr)
    if rank == 0:
        for path, keep_below in ((log_path, start), (out / "monitor_log.jsonl", start + 1)):
            if start == 0:
                path.unlink(missing_ok=True)
            else:
                truncate_log(path, keep_below)
    return start


def _loader(cfg: TrainConfig, data: _Data, trainer: Trainer, start: int, rank: int, world: int):
    augment = TrainAugment(cfg.crop_size, scale_range=cfg.scale_range, ignore_index=data.stages[0].ignore_index)
    return torch.utils.data.DataLoader(
        _AugmentedSamples(data.stages, augment),
        batch_sampler=_StepBatches(cfg, [len(d) for d in data.stages], start, rank, world),
        num_workers=cfg.num_workers, pin_memory=trainer.cuda, persistent_workers=False,
        generator=torch.Generator().manual_seed(cfg.seed))  # keeps the global RNG (dropout) untouched


def _error(trainer: Trainer, t: int, record: dict, labels, out: Path, cause: str) -> FloatingPointError:
    return divergence_error(t, record.get("loss", float("nan")), trainer.base_lr(t) * trainer.lr_factor(t),
                            labels, trainer.ignore_index, out / "checkpoint.pt", cause)


def _step(trainer: Trainer, images, labels, t: int, out: Path) -> dict:
    """One checked step: NaN/inf logits, loss or batch-norm statistics stop the run."""
    try:
        record = trainer.step(images, labels, t)
    except NonFiniteError:
        raise _error(trainer, t, {}, labels, out, "the logits are not finite") from None
    if not all(math.isfinite(v) for v in record.values()):
        raise _error(trainer, t, record, labels, out, "the loss is not finite")
    if not trainer.finite(parameters=False):
        raise _error(trainer, t, record, labels, out, "batch-norm statistics are not finite")
    return record


def _checkpoint(trainer: Trainer, done: int, out: Path, log, record: dict, labels) -> None:
    """Write the checkpoint after ``done`` steps (rank 0), never a non-finite one: parameters or
    optimiser state that step ``done - 1`` left non-finite stop the run, the previous one is kept."""
    if log is not None:
        log.flush()
    state = trainer.state_dict(done)
    if not all_finite(state):
        raise _error(trainer, done - 1, record, labels, out, "parameters or optimiser state are not finite after it")
    atomic_save(state, out / "checkpoint.pt")


def _monitor(trainer: Trainer, dataset, done: int, out: Path) -> None:
    """One point of the learning curve: the model after ``done`` steps on the monitor split (single
    scale, no predictions saved) appended to ``monitor_log.jsonl`` (mIoU, pixel accuracy, group means)."""
    cfg = trainer.cfg
    inference = InferenceConfig(crop_size=cfg.eval_crop_size, stride=cfg.eval_stride)
    ev = evaluate_model(trainer.model, dataset, trainer.device, inference,
                        channels_last=trainer.cuda and cfg.channels_last,
                        boundary_tolerance_px=None)   # only mIoU is kept: no second boundary matching
    group_means(ev, class_groups(dataset))
    record = {"step": done, "split": cfg.monitor_split,
              **{k: v for k, v in ev.items() if k == "pixel_accuracy" or k.startswith("miou")}}
    with open(out / "monitor_log.jsonl", "a") as f:
        f.write(json.dumps(jsonable(record)) + "\n")


def _run_steps(trainer: Trainer, loader, start: int, out: Path, rank: int, world: int, progress: bool,
               stop_after: int | None, monitor=None) -> list[float] | None:
    """The loop: one checked step per batch, the log (rank 0), checkpoints every ``checkpoint_every``
    steps, at the end of each stage and on Ctrl-C.  Returns the step times, or None when
    ``stop_after`` ended it early."""
    cfg = trainer.cfg
    log = open(out / "train_log.jsonl", "a") if rank == 0 else None
    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.total_steps, initial=start, desc=run_name(cfg), unit="step", dynamic_ncols=True)
    step_times: list[float] = []
    try:
        with DeferredInterrupt(world == 1) as interrupt:
            for t, (images, labels) in enumerate(loader, start=start):
                tick = time.perf_counter()
                record = _step(trainer, images, labels, t, out)
                step_times.append(time.perf_counter() - tick)
                last = t == cfg.total_steps - 1
                if log is not None and (t % cfg.log_every == 0 or last):
                    extra = trainer.objective.log_record() if t % (cfg.log_every * 10) == 0 or last else {}
                    log.write(json.dumps({"step": t, **record, **extra}) + "\n")
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{record['loss']:.3f}", refresh=False)
                done = t + 1
                if rank == 0 and (done % cfg.checkpoint_every == 0 or done in (cfg.steps, cfg.total_steps)
                                  or interrupt.requested):
                    _checkpoint(trainer, done, out, log, record, labels)
                if rank == 0 and monitor is not None and (done % cfg.monitor_every == 0 or done == cfg.total_steps):
                    _monitor(trainer, monitor, done, out)
                if interrupt.requested:
                    raise KeyboardInterrupt
                if stop_after is not None and done - start >= stop_after:
                    return None
    finally:
        if bar is not None:
            bar.close()
        if log is not None:
            log.close()
    return step_times


def _evaluate_and_record(trainer: Trainer, data: _Data, out: Path, timing: dict, provenance: dict) -> dict:
    """Evaluate the trained model on the val split (single scale) and write ``metrics.json``."""
    cfg = trainer.cfg
    inference = InferenceConfig(crop_size=cfg.eval_crop_size, stride=cfg.eval_stride)
    ev = evaluate_model(trainer.model, data.val, trainer.device, inference,
                        channels_last=trainer.cuda and cfg.channels_last, predictions_dir=out / "predictions")
    result = evaluation_result(dataclasses.asdict(cfg), run_name(cfg), None, data.val, ev, inference, cfg.val_split,
                               "source", timing["started"], timing["t0"])
    steps = timing["step_times"]
    median_step = float(np.median(steps)) if steps else float("nan")
    result["config_hash"] = config_hash(cfg, data.identity)
    result["overrides"] = overrides(cfg)
    # which checkpoint these metrics (and every later evaluation) belong to
    result["checkpoint_sha256"] = file_sha256(out / "checkpoint.pt")
    result["provenance"] = {
        **run_provenance(trainer.device), **provenance, "started": timing["started"],
        "wall_seconds": time.perf_counter() - timing["t0"], "train_seconds": timing["train_seconds"],
        "resumed_from_step": timing["start"],
        "median_step_seconds": median_step,
        "images_per_second": cfg.batch_size / median_step if steps else None,
        **{k: v for k, v in result["provenance"].items() if k not in ("started", "wall_seconds")},
        "data_root": str(data.root), "data": data.identity}
    result.update(trainer.objective.result())
    return write_json(out / "metrics.json", result)


def train(cfg: TrainConfig, out_dir: str | os.PathLike | None = None, data_root=None, *,
          resume: bool | None = None, force: bool = False, progress: bool = True, device: str = "auto",
          stop_after: int | None = None) -> dict:
    """Train one run and evaluate it on the val split; returns the ``metrics.json`` content.

    ``out_dir`` defaults to :func:`aafcore.config.run_dir`; it is checked (writable, not a file)
    before any work and locked while the run trains (a second process gets "run D is in use by
    process P").  A finished run whose ``config_hash`` matches is skipped (its metrics are
    returned); one of another configuration is refused.  ``force`` retrains from scratch.  An
    unfinished run is continued from its checkpoint (``resume=None`` or ``True``; ``True`` also
    says when there is none; ``False`` refuses to discard it without ``force``).  A step that
    leaves a NaN/inf stops with "training diverged at step S" and keeps the last finite
    checkpoint.  ``stop_after`` ends the process-local loop after that many steps without
    evaluating (used to test resuming).
    """
    check_weights(cfg)
    rank, world, local_rank = dist_info()
    dev = resolve_device(device, local_rank)
    out = Path(out_dir) if out_dir is not None else run_dir(cfg)
    if rank == 0:
        check_writable_dir(out, "run folder")
    if world > 1:
        init_process_group(dev)
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the {world} processes")
    with locked(out, "run") if rank == 0 else contextlib.nullcontext():
        data = _load_data(cfg, data_root, rank, world > 1, progress)
        previous = claim_folder(out, config_hash(cfg, data.identity), resume, force) if rank == 0 else None
        if world > 1:   # the other ranks follow rank 0's decision
            decision = [previous is not None]
            dist.broadcast_object_list(decision, src=0)
            if decision[0] and rank != 0:
                previous = read_json(out / "metrics.json")
        if previous is not None:
            if rank == 0 and progress:
                print(skip_message(out, previous, "run"))
            return previous
        return _train_and_evaluate(cfg, data, out, dev, resume, progress, stop_after)


def _train_and_evaluate(cfg: TrainConfig, data: _Data, out: Path, dev: torch.device, resume: bool | None,
                        progress: bool, stop_after: int | None) -> dict:
    rank, world, _ = dist_info()
    timing = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "t0": time.perf_counter()}
    trainer = Trainer(cfg, data.stages[0].num_classes, dev, data.stages[0].ignore_index, world > 1)
    timing["start"] = _resume(trainer, cfg, out, resume, rank)
    loader = _loader(cfg, data, trainer, timing["start"], rank, world)
    timing["step_times"] = _run_steps(trainer, loader, timing["start"], out, rank, world, progress, stop_after,
                                      data.monitor)
    if timing["step_times"] is None:
        return {}
    timing["train_seconds"] = time.perf_counter() - timing["t0"]
    result: dict = {}
    if rank == 0:
        result = _evaluate_and_record(trainer, data, out, timing, {"processes": world})
    if world > 1:
        dist.barrier()
    return result


# --------------------------------------------------------------------------- several processes


def train_distributed(cfg: TrainConfig, out_dir: str | os.PathLike | None = None, processes: int = 2, *,
                      data_root=None, force: bool = False, device: str = "auto",
                      timeout: float | None = None) -> dict:
    """:func:`train` in ``processes`` processes under torchrun (what the notebook does for ``gpus > 1``).

    The config goes to ``<out_dir>/config.json``; the processes share the global batch
    (``batch_size`` must divide by ``processes``), synchronise batch norm, and rank 0 writes.
    Returns the run's ``metrics.json``; a failed launch raises ``RuntimeError`` with the end of
    its output.
    """
    check_weights(cfg)
    if processes < 1 or cfg.batch_size % processes:
        raise ValueError(f"batch_size {cfg.batch_size} must be divisible by processes={processes}")
    out = Path(out_dir) if out_dir is not None else run_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    config_file = out / "config.json"
    atomic_write_text(config_file, json.dumps(dataclasses.asdict(cfg), indent=1))
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        env.setdefault("OMP_NUM_THREADS", "1")
    proc = subprocess.run(torchrun_command(config_file, out, processes, data_root=data_root, force=force,
                                           device=device), env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"torchrun with {processes} processes failed (exit {proc.returncode}):\n{tail}")
    return json.loads((out / "metrics.json").read_text())
