"""One trainer for every method of the paper: ``baseline``, ``affinity``, ``aaf``, ``emb``, ``gan``.

Read top to bottom like torchvision's ``references/segmentation``: a :class:`TrainConfig`
dataclass (one per profile in :data:`PROFILES`), a :class:`Trainer` that owns the model, the
losses and the optimisers and does one step, and :func:`train` which runs the loop, writes the
checkpoint, the training log and ``metrics.json``.

The objective (DESIGN.md section 5), with ``t`` the step and ``T`` the number of steps::

    loss = CE(logits, y↓) + 10^(-t/T) · L_aux(...)          y↓: labels nearest-downsampled to the logits

* ``affinity``: ``L_aux = AffinityFieldLoss`` (3x3); ``aaf``: ``AdaptiveAffinityFieldLoss`` whose
  weight logits are *maximised* (momentum SGD with ``maximize=True`` at the backbone's learning
  rate and poly schedule, no weight decay); ``emb``: ``PixelEmbeddingLoss`` on the head's
  penultimate features; ``gan``: the segmenter's side of Eq. 8 against a patch discriminator
  that is trained alongside (Adam).
* Poly learning rate ``lr · (1 - t/T)^0.9``; momentum 0.9; weight decay 5e-4 on convolution and
  linear weights (not on batch-norm parameters or biases); the head learns 10x faster.

Determinism and resuming: the samples of step ``t`` and their augmentation are a pure function
of ``(seed, t)`` (an epoch-wise permutation and a per-sample generator), and the checkpoint holds
every optimiser and the torch random state, so a run resumed from step ``k`` is bit-identical
on the CPU to one that never stopped.

Several processes: under ``torchrun`` every rank takes its slice of the same global batch, the
model is wrapped in ``DistributedDataParallel`` with synchronised batch norm (torch's
``SyncBatchNorm`` on CUDA, :class:`CPUSyncBatchNorm` on the CPU where torch's does not run), and
only rank 0 evaluates and writes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from aafcore import losses
from aafcore.data import TrainAugment, build_dataset, generate_synthetic, SYNTHETIC_PROFILES
from aafcore.evaluate import InferenceConfig, evaluate_model, evaluation_result, jsonable
from aafcore.models import build_model

__all__ = ["METHODS", "PROFILES", "TrainConfig", "Trainer", "train", "train_distributed", "torchrun_command",
           "load_config", "run_dir", "config_hash",
           "CPUSyncBatchNorm", "convert_sync_batchnorm"]

METHODS = ("baseline", "affinity", "aaf", "emb", "gan")
BASES = ("fcn", "pspnet")


@dataclass
class TrainConfig:
    """Everything that defines a training run.  Changing any field changes :func:`config_hash`."""

    profile: str = "smoke"
    dataset: str = "synthetic"
    base: str = "pspnet"
    backbone: str = "narrow"
    method: str = "baseline"
    seed: int = 0
    steps: int = 8
    batch_size: int = 4              # global batch (split across processes)
    crop_size: int = 48
    scale_range: tuple[float, float] = (0.5, 2.0)
    lr: float = 0.01                 # backbone; the head gets head_lr_mult x this
    head_lr_mult: float = 10.0
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    loss_decay: bool = True          # 10^(-t/T) on the auxiliary loss
    kernel_sizes: tuple[int, ...] = (3, 5, 7)
    margin: float = 3.0
    lambda_edge: float = 1.0
    lambda_not_edge: float = 1.0
    weight_by: str = "label"
    emb_margin: float = 0.2
    gan_lr: float = 1e-4
    gan_depth: int = 2               # stride-2 layers of the patch discriminator
    pretrained: str | None = None    # local torchvision ResNet weights
    amp: bool = True                 # bfloat16 autocast, CUDA only
    channels_last: bool = True       # CUDA only
    train_split: str = "train"
    val_split: str = "val"
    # a second stage (the paper's VOC protocol: 30K steps on train_aug, then 30K on train at LR 1e-4):
    # poly schedule, loss decay and optimiser momentum start afresh, the weights carry on
    finetune_steps: int = 0
    finetune_lr: float = 1e-4
    finetune_split: str = "train"
    eval_crop_size: int | None = None   # sliding-window inference (None: whole image)
    eval_stride: int | None = None      # window stride (None: 2/3 of the window)
    checkpoint_every: int = 4
    log_every: int = 1               # AAF weights are logged every log_every * 10 steps
    num_workers: int = 0

    @property
    def total_steps(self) -> int:
        """Steps of both stages: ``steps + finetune_steps``."""
        return self.steps + self.finetune_steps

    def validate(self) -> "TrainConfig":
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose from {', '.join(METHODS)}")
        if self.base not in BASES:
            raise ValueError(f"unknown base {self.base!r}; choose from {', '.join(BASES)}")
        for name in ("steps", "batch_size", "crop_size", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.finetune_lr <= 0:
            raise ValueError(f"lr and finetune_lr must be > 0, got {self.lr} and {self.finetune_lr}")
        if self.finetune_steps < 0:
            raise ValueError(f"finetune_steps must be >= 0, got {self.finetune_steps}")
        if not self.kernel_sizes or any(k < 3 or k % 2 == 0 for k in self.kernel_sizes):
            raise ValueError(f"kernel sizes must be odd integers >= 3, got {list(self.kernel_sizes)}")
        self.scale_range = tuple(float(s) for s in self.scale_range)
        self.kernel_sizes = tuple(int(k) for k in self.kernel_sizes)
        return self


# The profiles of DESIGN.md section 7.  The cpu profile's size, steps and learning rate were
# fixed on the *baseline* alone (it must learn clearly within the time budget) before any
# method was compared; they are the same for every method.
PROFILES: dict[str, TrainConfig] = {
    "smoke": TrainConfig(profile="smoke", backbone="narrow", steps=8, batch_size=4, crop_size=48,
                         checkpoint_every=4, lr=0.01),
    "cpu": TrainConfig(profile="cpu", backbone="narrow", steps=2000, batch_size=8, crop_size=112,
                       checkpoint_every=250, lr=0.03),
    "gpu": TrainConfig(profile="gpu", backbone="resnet50", steps=8000, batch_size=16, crop_size=224,
                       checkpoint_every=1000, lr=0.03, num_workers=6),
    # The paper's settings (Section 4.4 and the authors' bashscripts/): PSPNet on ResNet-101 from
    # ImageNet weights, base LR 1e-3, poly 0.9, momentum 0.9, weight decay 5e-4, random scale
    # [0.5, 2] + mirror.  VOC: crops 336, batch 8 (one GPU), 30K steps on train_aug, then 30K on
    # train at LR 1e-4; inference windows 480 (stride 320).  Cityscapes: crops 720, batch 8 over
    # 4 GPUs, 90K steps on the fine train set; inference windows 720 (stride 480).
    "voc": TrainConfig(profile="voc", dataset="voc_aug", backbone="resnet101", steps=30000, batch_size=8,
                       crop_size=336, lr=1e-3, train_split="train_aug", finetune_steps=30000, finetune_lr=1e-4,
                       finetune_split="train", eval_crop_size=480, eval_stride=320, checkpoint_every=1000,
                       log_every=10, num_workers=8),
    "cityscapes": TrainConfig(profile="cityscapes", dataset="cityscapes", backbone="resnet101", steps=90000,
                              batch_size=8, crop_size=720, lr=1e-3, eval_crop_size=720, eval_stride=480,
                              checkpoint_every=1000, log_every=10, num_workers=8),
}
PRETRAINED_PROFILES = ("voc", "cityscapes")
TORCHVISION_WEIGHTS = {"resnet50": "resnet50-0676ba61.pth", "resnet101": "resnet101-63fe2227.pth"}
# fields added after runs were committed: left out of the hash while at their defaults, so that
# the hash of an older configuration does not change
_HASH_OMIT_IF_DEFAULT = ("finetune_steps", "finetune_lr", "finetune_split", "eval_crop_size", "eval_stride")


def check_weights(cfg: TrainConfig) -> None:
    """The real-data profiles start from ImageNet weights: a ``ValueError`` when none are given."""
    if cfg.profile in PRETRAINED_PROFILES and cfg.pretrained is None:
        raise ValueError(f"profile {cfg.profile!r} trains from ImageNet weights: pass --backbone-weights PATH "
                         f"(a torchvision {cfg.backbone} state dict such as {TORCHVISION_WEIGHTS.get(cfg.backbone, '')})")


def profile_config(profile: str, **overrides) -> TrainConfig:
    """The :class:`TrainConfig` of ``profile`` with ``overrides`` applied (None values ignored)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
    cfg = dataclasses.replace(PROFILES[profile], **{k: v for k, v in overrides.items() if v is not None})
    return cfg.validate()


def run_name(cfg: TrainConfig) -> str:
    """``<base>-<method>[-k3_5]-s<seed>``: the kernel-size suffix only for non-default AAF sizes."""
    suffix = ""
    if cfg.method == "aaf" and tuple(cfg.kernel_sizes) != (3, 5, 7):
        suffix = "-k" + "_".join(str(k) for k in cfg.kernel_sizes)
    return f"{cfg.base}-{cfg.method}{suffix}-s{cfg.seed}"


def run_dir(cfg: TrainConfig, results_root: str | os.PathLike = "results") -> Path:
    """``results/<profile>/<dataset>/<run name>/`` (DESIGN.md section 9)."""
    return Path(results_root) / cfg.profile / cfg.dataset / run_name(cfg)


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}


def config_hash(cfg: TrainConfig, data_meta: dict | None = None) -> str:
    """sha256 of the config (and of the dataset's spec), 16 hex digits."""
    config = dataclasses.asdict(cfg)
    for name in _HASH_OMIT_IF_DEFAULT:
        if config[name] == _DEFAULTS[name]:
            del config[name]
    payload = {"config": config, "data": data_meta or {}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=list).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- distributed helpers


class CPUSyncBatchNorm(nn.BatchNorm2d):
    """Batch norm whose training statistics are pooled over all processes (for gloo on the CPU).

    torch's ``SyncBatchNorm`` only runs on accelerators.  Here the per-channel ``Σx``, ``Σx²`` and
    counts are summed with the differentiable ``torch.distributed.nn.functional.all_reduce``,
    so the result (and its gradient) equals batch norm over the global batch.
    """

    def forward(self, x):
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        c = x.shape[1]
        count = x.new_full((1,), x.numel() // c)
        stats = all_reduce(torch.cat((x.sum((0, 2, 3)), x.square().sum((0, 2, 3)), count)))
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean.square()).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean, alpha=m)
                self.running_var.mul_(1 - m).add_(var * n / (n - 1).clamp_min(1), alpha=m)
        shape = (1, c, 1, 1)
        y = (x - mean.view(shape)) * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Synchronised batch norm: torch's on CUDA, :class:`CPUSyncBatchNorm` on the CPU."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            new = CPUSyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                   child.track_running_stats)
            new.load_state_dict(child.state_dict())
            setattr(module, name, new)
        else:
            convert_sync_batchnorm(child, device)
    return module


def _dist_info() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) otherwise."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def _average_gradients(params) -> None:
    """All-reduce-average the gradients of parameters that DDP does not manage."""
    world = dist.get_world_size()
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(world)


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
    """Model, losses and optimisers of one run, and :meth:`step`, one training iteration.

    ``step(images [N,3,H,W], labels [N,H,W], t)`` returns a dict of floats (``loss``, ``ce``,
    ``aux``, ``decay``, ``lr`` and, for ``gan``, ``d_loss``).
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
        model = build_model(cfg.base, cfg.backbone, num_classes, pretrained=cfg.pretrained)
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

        def groups(params, lr):
            decay = [p for p in params if p.ndim > 1]
            no_decay = [p for p in params if p.ndim <= 1]
            return [{"params": decay, "lr": lr, "initial_lr": lr, "weight_decay": cfg.weight_decay},
                    {"params": no_decay, "lr": lr, "initial_lr": lr, "weight_decay": 0.0}]

        self.optimizer = torch.optim.SGD(groups(backbone_params, cfg.lr)
                                         + groups(head_params, cfg.lr * cfg.head_lr_mult),
                                         lr=cfg.lr, momentum=cfg.momentum)
        self.aux: nn.Module | None = None
        self.aux_optimizer: torch.optim.Optimizer | None = None
        self.discriminator: nn.Module | None = None
        if cfg.method == "affinity":
            self.aux = losses.AffinityFieldLoss(num_classes, cfg.margin, cfg.lambda_edge,
                                                cfg.lambda_not_edge, ignore_index)
        elif cfg.method == "aaf":
            self.aux = losses.AdaptiveAffinityFieldLoss(
                num_classes, cfg.kernel_sizes, cfg.margin, cfg.lambda_edge, cfg.lambda_not_edge,
                ignore_index, weight_by=cfg.weight_by).to(self.device)
            self.aux_optimizer = torch.optim.SGD(
                [{"params": list(self.aux.parameters()), "initial_lr": cfg.lr}], lr=cfg.lr,
                momentum=cfg.momentum, weight_decay=0.0, maximize=True)
        elif cfg.method == "emb":
            self.aux = losses.PixelEmbeddingLoss(cfg.emb_margin, 3, cfg.lambda_edge, cfg.lambda_not_edge,
                                                 ignore_index)
        elif cfg.method == "gan":
            self.discriminator = losses.PatchDiscriminator(num_classes, depth=cfg.gan_depth).to(self.device)
            self.aux_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=cfg.gan_lr,
                                                  betas=(0.5, 0.999))

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

    def step(self, images: torch.Tensor, labels: torch.Tensor, t: int) -> dict:
        cfg = self.cfg
        if cfg.finetune_steps and t == cfg.steps:  # the second stage starts with fresh optimiser states
            for opt in (self.optimizer, self.aux_optimizer):
                if opt is not None:
                    opt.state.clear()
        scale = self.base_lr(t) / cfg.lr
        factor = self.lr_factor(t)
        for opt in (self.optimizer, self.aux_optimizer if cfg.method == "aaf" else None):
            if opt is not None:
                for g in opt.param_groups:
                    g["lr"] = g["initial_lr"] * scale * factor
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        if self.cuda and cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        self.net.train()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            out = self.net(images, with_features=cfg.method == "emb")
        logits, features = out if isinstance(out, tuple) else (out, None)
        logits = logits.float()
        small = losses.downsample_labels(labels, tuple(logits.shape[-2:]))
        if self.distributed:
            # mean over the valid pixels of the *global* batch, as one process would compute it
            # (DDP averages the gradients over processes, hence the factor world size)
            count = (small != self.ignore_index).sum().float()
            dist.all_reduce(count)
            ce = F.cross_entropy(logits, small, ignore_index=self.ignore_index, reduction="sum")
            ce = ce * dist.get_world_size() / count.clamp_min(1)
        else:
            ce = F.cross_entropy(logits, small, ignore_index=self.ignore_index)
        decay = self.decay(t)
        aux = logits.new_zeros(())
        d_loss = None
        if cfg.method in ("affinity", "aaf"):
            aux = self.aux(logits, small)
        elif cfg.method == "emb":
            aux = self.aux(features.float(), small)
        elif cfg.method == "gan":
            real, fake = losses.gan_label_maps(logits, small, self.num_classes, self.ignore_index)
            for p in self.discriminator.parameters():
                p.requires_grad_(False)
            aux = losses.segmenter_adversarial_loss(self.discriminator(fake))
            for p in self.discriminator.parameters():
                p.requires_grad_(True)
        loss = ce + decay * aux
        self.optimizer.zero_grad(set_to_none=True)
        if self.aux_optimizer is not None:
            self.aux_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.method == "aaf":
            if self.distributed:
                _average_gradients(self.aux.parameters())
            self.aux_optimizer.step()
        self.optimizer.step()
        if cfg.method == "gan":
            d_loss = losses.discriminator_loss(self.discriminator(real), self.discriminator(fake.detach()))
            d_loss.backward()
            if self.distributed:
                _average_gradients(self.discriminator.parameters())
            self.aux_optimizer.step()
        values = torch.stack([v.detach().float() for v in (loss, ce, aux, d_loss if d_loss is not None else aux)])
        if self.distributed:  # log the global batch: the mean of the processes' losses
            dist.all_reduce(values)
            values /= dist.get_world_size()
        values = values.tolist()
        record = {"loss": values[0], "ce": values[1], "aux": values[2], "decay": decay, "lr": self.base_lr(t) * factor}
        if d_loss is not None:
            record["d_loss"] = values[3]
        return record

    def aaf_weights(self) -> dict | None:
        """The AAF kernel-size weights: softmax over sizes, ``[C, K]`` lists, and the effective size."""
        if self.cfg.method != "aaf":
            return None
        edge, not_edge = self.aux.weights()
        return {"kernel_sizes": list(self.cfg.kernel_sizes),
                "edge_weights": edge.detach().cpu().tolist(),
                "not_edge_weights": not_edge.detach().cpu().tolist(),
                "effective_kernel_size": self.aux.effective_kernel_size("edge").detach().cpu().tolist(),
                "effective_kernel_size_not_edge":
                    self.aux.effective_kernel_size("not_edge").detach().cpu().tolist()}

    # -- checkpoints
    def state_dict(self, step: int) -> dict:
        state = {"step": step, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "torch_rng": torch.get_rng_state(), "config": dataclasses.asdict(self.cfg)}
        if self.cuda:
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        if self.aux is not None and list(self.aux.parameters()):
            state["aux"] = self.aux.state_dict()
        if self.discriminator is not None:
            state["discriminator"] = self.discriminator.state_dict()
        if self.aux_optimizer is not None:
            state["aux_optimizer"] = self.aux_optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict) -> int:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        if self.cuda and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        if "aux" in state:
            self.aux.load_state_dict(state["aux"])
        if "discriminator" in state:
            self.discriminator.load_state_dict(state["discriminator"])
        if "aux_optimizer" in state:
            self.aux_optimizer.load_state_dict(state["aux_optimizer"])
        return int(state["step"])


# --------------------------------------------------------------------------- files


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _truncate_log(path: Path, step: int) -> None:
    """Keep the log records of steps ``< step`` (those before the checkpoint we resume from)."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", -1) < step]
    _atomic_write_text(path, "".join(line + "\n" for line in kept))


def git_commit() -> str | None:
    """The commit of the working tree (``+dirty`` when it has changes), or None outside git."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty else "")


def default_data_root(cfg: TrainConfig) -> Path:
    """Where ``aaf train`` keeps the generated synthetic benchmark: ``data/synthetic-<profile>``."""
    return Path(os.environ.get("AAF_DATA", "data")) / f"{cfg.dataset}-{cfg.profile}"


def prepare_data(cfg: TrainConfig, data_root: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """The dataset root of ``cfg``; the synthetic benchmark is generated there on first use."""
    if data_root is not None:
        return Path(data_root)
    if cfg.dataset != "synthetic":
        raise ValueError(f"dataset {cfg.dataset!r} (profile {cfg.profile}) is read from disk: pass its directory "
                         f"as data_root (--data-root); the book's reproduction chapter shows the layout")
    root = default_data_root(cfg)
    if cfg.dataset == "synthetic":
        generate_synthetic(root, SYNTHETIC_PROFILES[cfg.profile], progress=progress)
    return root


def _class_groups(dataset) -> dict[str, list[int]]:
    meta = getattr(dataset, "meta", None) or {}
    groups: dict[str, list[int]] = {}
    for c, entry in enumerate(meta.get("classes", [])):
        if isinstance(entry, dict) and "group" in entry:
            groups.setdefault(entry["group"], []).append(c)
    return groups


def summarise(result: dict, dataset) -> dict:
    """Adds the per-group means of a metrics dict: ``miou_<group>`` (e.g. ``miou_thin``,
    ``miou_large``), ``instance_miou_<group>`` and ``mean_boundary_{precision,recall,f}_<group>``."""
    per_class = {"miou": "iou", "instance_miou": "instance_iou", "mean_boundary_precision": "boundary_precision",
                 "mean_boundary_recall": "boundary_recall", "mean_boundary_f": "boundary_f"}
    for group, classes in _class_groups(dataset).items():
        for mean_key, key in per_class.items():
            if key in result:
                values = np.asarray(result[key], dtype=np.float64)[classes]
                result[f"{mean_key}_{group}"] = (float(np.nanmean(values)) if np.isfinite(values).any()
                                                 else float("nan"))
    return result


# --------------------------------------------------------------------------- the loop


def train(cfg: TrainConfig, out_dir: str | os.PathLike | None = None, data_root=None, *,
          resume: bool = False, force: bool = False, progress: bool = True, device: str = "auto",
          stop_after: int | None = None) -> dict:
    """Train one run and evaluate it on the val split; returns the ``metrics.json`` content.

    ``out_dir`` defaults to :func:`run_dir`.  A finished run whose ``config_hash`` matches is
    skipped (its metrics are returned) unless ``force``.  ``resume`` continues from the run's
    checkpoint.  ``stop_after`` ends the process-local loop after that many steps without
    evaluating (used to test resuming).
    """
    from aafcore.cli import environment

    cfg.validate()
    check_weights(cfg)
    rank, world, local_rank = _dist_info()
    distributed = world > 1
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    dev = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if distributed and not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if use_cuda else "gloo")
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the {world} processes")
    out = Path(out_dir) if out_dir is not None else run_dir(cfg)
    metrics_path, ckpt_path, log_path = out / "metrics.json", out / "checkpoint.pt", out / "train_log.jsonl"

    if rank == 0:
        root = prepare_data(cfg, data_root, progress=progress)
    if distributed:
        dist.barrier()
    root = prepare_data(cfg, data_root, progress=False) if rank != 0 else root
    train_set = build_dataset(cfg.dataset, root, split=cfg.train_split)
    stage_sets = [train_set]
    if cfg.finetune_steps:
        stage_sets.append(build_dataset(cfg.dataset, root, split=cfg.finetune_split))
    val_set = build_dataset(cfg.dataset, root, split=cfg.val_split)
    data_meta = getattr(train_set, "meta", None) or {}
    data_meta = {k: data_meta[k] for k in ("spec", "generator") if k in data_meta}
    chash = config_hash(cfg, data_meta)

    if metrics_path.exists() and not force:
        previous = json.loads(metrics_path.read_text())
        if previous.get("config_hash") == chash:
            if rank == 0 and progress:
                print(f"{out}: finished run with the same config, skipped (use --force to retrain)")
            return previous

    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    t0 = time.perf_counter()
    trainer = Trainer(cfg, train_set.num_classes, dev, train_set.ignore_index, distributed)
    start = 0
    if resume and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=dev, weights_only=False)
        if state.get("config") != dataclasses.asdict(cfg):
            raise ValueError(f"{ckpt_path}: checkpoint was written by a different config; "
                             "train without --resume (or with --force) to start over")
        start = trainer.load_state_dict(state)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        if start == 0:
            log_path.unlink(missing_ok=True)
        else:
            _truncate_log(log_path, start)

    augment = TrainAugment(cfg.crop_size, scale_range=cfg.scale_range, ignore_index=train_set.ignore_index)
    loader = torch.utils.data.DataLoader(
        _AugmentedSamples(stage_sets, augment),
        batch_sampler=_StepBatches(cfg, [len(d) for d in stage_sets], start, rank, world),
        num_workers=cfg.num_workers, pin_memory=trainer.cuda, persistent_workers=False,
        generator=torch.Generator().manual_seed(cfg.seed))  # keeps the global RNG (dropout) untouched

    log = open(log_path, "a") if rank == 0 else None
    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.total_steps, initial=start, desc=run_name(cfg), unit="step", dynamic_ncols=True)
    step_times: list[float] = []
    t = start
    try:
        for t, (images, labels) in enumerate(loader, start=start):
            tick = time.perf_counter()
            record = trainer.step(images, labels, t)
            step_times.append(time.perf_counter() - tick)
            if not all(math.isfinite(v) for v in record.values()):
                raise FloatingPointError(f"non-finite loss at step {t}: {record}")
            last = t == cfg.total_steps - 1
            if log is not None and (t % cfg.log_every == 0 or last):
                record = {"step": t, **record}
                if cfg.method == "aaf" and (t % (cfg.log_every * 10) == 0 or last):
                    w = trainer.aaf_weights()
                    record["effective_kernel_size"] = w["effective_kernel_size"]
                    record["edge_weights"] = w["edge_weights"]
                log.write(json.dumps(record) + "\n")
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.3f}", refresh=False)
            done = t + 1
            if done % cfg.checkpoint_every == 0 or done in (cfg.steps, cfg.total_steps):
                if log is not None:
                    log.flush()
                if rank == 0:
                    _atomic_save(trainer.state_dict(done), ckpt_path)
            if stop_after is not None and done - start >= stop_after:
                return {}
    finally:
        if bar is not None:
            bar.close()
        if log is not None:
            log.close()
    train_seconds = time.perf_counter() - t0

    result: dict = {}
    if rank == 0:
        inference = InferenceConfig(crop_size=cfg.eval_crop_size, stride=cfg.eval_stride)
        ev = evaluate_model(trainer.model, val_set, dev, inference, channels_last=trainer.cuda and cfg.channels_last,
                            predictions_dir=out / "predictions")
        result = evaluation_result(cfg, None, val_set, ev, inference, cfg.val_split, "source", started, t0)
        median_step = float(np.median(step_times)) if step_times else float("nan")
        result["config_hash"] = chash
        result["provenance"] = {
            "git_commit": git_commit(), "packages": environment(),
            "device": torch.cuda.get_device_name(dev) if trainer.cuda else "cpu",
            "processes": world, "started": started,
            "wall_seconds": time.perf_counter() - t0, "train_seconds": train_seconds,
            "resumed_from_step": start,
            "median_step_seconds": median_step,
            "images_per_second": cfg.batch_size / median_step if step_times else None,
            **{k: v for k, v in result["provenance"].items() if k not in ("started", "wall_seconds")},
            "data_root": str(root), "data": data_meta}
        weights = trainer.aaf_weights()
        if weights is not None:
            result["aaf"] = weights
        result = jsonable(result)
        _atomic_write_text(metrics_path, json.dumps(result, indent=1, allow_nan=False))
    if distributed:
        dist.barrier()
    return result


# --------------------------------------------------------------------------- several processes


def torchrun_command(config_file: str | os.PathLike, out_dir: str | os.PathLike, processes: int, *,
                     data_root: str | os.PathLike | None = None, force: bool = False, device: str = "auto",
                     standalone: bool = True) -> list[str]:
    """The command that trains the config in ``config_file`` (JSON) with ``processes`` processes.

    ``python -m torch.distributed.run --standalone --nproc_per_node N -m aafcore.cli train --config CONFIG
    --out OUT``:
    one process per GPU (``LOCAL_RANK`` picks the GPU, NCCL), or gloo on the CPU.  For several
    machines, run ``torchrun --nnodes M --node_rank R --rdzv-backend c10d --rdzv-endpoint HOST:PORT``
    with the same arguments on each (``standalone=False`` leaves the rendezvous to you).
    """
    cmd = [sys.executable, "-m", "torch.distributed.run"]
    if standalone:
        cmd.append("--standalone")
    cmd += ["--nproc_per_node", str(int(processes)), "-m", "aafcore.cli", "train", "--config", str(config_file),
            "--out", str(out_dir), "--device", device, "--no-progress"]
    if data_root is not None:
        cmd += ["--data-root", str(data_root)]
    if force:
        cmd.append("--force")
    return cmd


def train_distributed(cfg: TrainConfig, out_dir: str | os.PathLike | None = None, processes: int = 2, *,
                      data_root=None, force: bool = False, device: str = "auto",
                      timeout: float | None = None) -> dict:
    """:func:`train` in ``processes`` processes under torchrun (what the notebook does for ``gpus > 1``).

    The config goes to ``<out_dir>/config.json``; the processes share the global batch
    (``batch_size`` must divide by ``processes``), synchronise batch norm, and rank 0 writes.
    Returns the run's ``metrics.json``; a failed launch raises ``RuntimeError`` with the end of
    its output.
    """
    import subprocess

    cfg.validate()
    check_weights(cfg)
    if processes < 1 or cfg.batch_size % processes:
        raise ValueError(f"batch_size {cfg.batch_size} must be divisible by processes={processes}")
    out = Path(out_dir) if out_dir is not None else run_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    config_file = out / "config.json"
    _atomic_write_text(config_file, json.dumps(dataclasses.asdict(cfg), indent=1))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent.parent),
                                                                     os.environ.get("PYTHONPATH")]))}
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        env.setdefault("OMP_NUM_THREADS", "1")
    proc = subprocess.run(torchrun_command(config_file, out, processes, data_root=data_root, force=force,
                                           device=device), env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"torchrun with {processes} processes failed (exit {proc.returncode}):\n{tail}")
    return json.loads((out / "metrics.json").read_text())


def load_config(path: str | os.PathLike) -> TrainConfig:
    """A :class:`TrainConfig` from a JSON file of its fields (``dataclasses.asdict``)."""
    path = Path(path)
    try:
        fields = json.loads(path.read_text())
        return TrainConfig(**fields).validate()
    except (OSError, ValueError, TypeError) as err:
        raise ValueError(f"{path}: not a training config ({' '.join(str(err).split())})") from None
