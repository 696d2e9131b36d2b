"""What defines a training run: :class:`TrainConfig`, the profiles, the run's name, folder and hash.

A config is a plain dataclass, checked when it is made (``__post_init__``): a bad value raises a
one-line ``ValueError`` that names the field.  :data:`PROFILES` holds one config per profile of
DESIGN.md section 7; :func:`profile_config` applies overrides to one.  :func:`config_hash` is
what the "skip when finished" rule compares; :func:`run_dir` is where a run's files go,
``results/<profile>/<dataset>/<base>-<method>[-k3_5]-s<seed>/``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from aafcore.datasets import DATASETS, SYNTHETIC_PROFILES, generate_synthetic
from aafcore.errors import check_name, one_line
from aafcore.models import BACKBONES, BASES, FCN_HEADS
from aafcore.objectives import AAF_METHODS, METHODS
from aafcore.runs import digest, read_json

__all__ = ["METHODS", "BASES", "BACKBONES", "TrainConfig", "PROFILES", "PRETRAINED_PROFILES", "TORCHVISION_WEIGHTS",
           "profile_config", "config_from_dict", "load_config", "check_weights", "run_name", "run_dir", "overrides", "config_hash",
           "default_data_root", "prepare_data", "data_identity"]


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
    # learning curve: every monitor_every steps the model is evaluated on monitor_split (single
    # scale) into monitor_log.jsonl; the study's step count and learning rate are chosen from it
    # on the baseline, on a tuning split that is neither val nor test (0 = off)
    monitor_every: int = 0
    monitor_split: str = "tuning"
    # FCN's head: "official" = the authors' bare 1x1 classifier; "torchvision" = FCNHead (3x3 conv +
    # BN + ReLU + dropout + 1x1), what the runs of benchmark v1 used
    fcn_head: str = "torchvision"

    def __post_init__(self):
        for name in ("profile", "train_split", "val_split", "finetune_split", "monitor_split"):   # folder/file names
            check_name(getattr(self, name), name)
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose from {', '.join(DATASETS)}")
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose from {', '.join(METHODS)}")
        if self.base not in BASES:
            raise ValueError(f"unknown base {self.base!r}; choose from {', '.join(BASES)}")
        if self.fcn_head not in FCN_HEADS:
            raise ValueError(f"unknown fcn_head {self.fcn_head!r}; choose from {', '.join(FCN_HEADS)}")
        for name in ("steps", "batch_size", "crop_size", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "finetune_lr", "head_lr_mult", "gan_lr", "poly_power", "margin", "emb_margin"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        for name in ("momentum", "weight_decay", "lambda_edge", "lambda_not_edge"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.finetune_steps < 0 or self.monitor_every < 0:
            raise ValueError(f"finetune_steps and monitor_every must be >= 0, got {self.finetune_steps}, "
                             f"{self.monitor_every}")
        if self.steps + self.finetune_steps > MAX_STEPS:
            raise ValueError(f"steps + finetune_steps = {self.steps + self.finetune_steps} is over {MAX_STEPS:.0e}: "
                             f"a typo? (the paper trains 90K steps)")
        if self.crop_size < MIN_CROP_SIZE:
            raise ValueError(f"crop_size {self.crop_size} is under {MIN_CROP_SIZE}: the networks' output stride is 8, "
                             f"so a smaller crop gives fewer than 2x2 logits")
        if not self.kernel_sizes or any(k < 3 or k % 2 == 0 for k in self.kernel_sizes):
            raise ValueError(f"kernel sizes must be odd integers >= 3, got {list(self.kernel_sizes)}")
        self.scale_range = tuple(float(s) for s in self.scale_range)   # JSON gives lists
        self.kernel_sizes = tuple(int(k) for k in self.kernel_sizes)

    @property
    def total_steps(self) -> int:
        """Steps of both stages: ``steps + finetune_steps``."""
        return self.steps + self.finetune_steps

    def validate(self) -> "TrainConfig":
        """Deprecated: a config is checked when it is made (``__post_init__``); returns it unchanged."""
        warnings.warn("TrainConfig.validate() is deprecated: a TrainConfig is checked when it is made",
                      DeprecationWarning, stacklevel=2)
        return self


_INT_FIELDS = ("seed", "steps", "batch_size", "crop_size", "gan_depth", "finetune_steps", "checkpoint_every",
               "log_every", "num_workers", "monitor_every")
MAX_STEPS = 10 ** 8
MIN_CROP_SIZE = 16


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
    # The study (issue 14, protocol/study.yaml): benchmark v2 (384 px images), 256 px crops (32 x 32
    # training logit maps), the authors' FCN.  lr and steps are what the registered protocol's
    # tuning rules chose on the baseline and the tuning split (protocol/study.yaml, 2.0.0).
    "study": TrainConfig(profile="study", backbone="narrow", steps=1500, batch_size=8, crop_size=256,
                         checkpoint_every=50, lr=0.03, fcn_head="official"),
    # The paper's settings (Section 4.4 and the authors' bashscripts/): PSPNet on ResNet-101 from
    # ImageNet weights, base LR 1e-3, poly 0.9, momentum 0.9, weight decay 5e-4, random scale
    # [0.5, 2] + mirror.  VOC: crops 336, batch 8 (one GPU), 30K steps on train_aug, then 30K on
    # train at LR 1e-4; inference windows 480 (stride 320).  Cityscapes: crops 720, batch 8 over
    # 4 GPUs, 90K steps on the fine train set; inference windows 720 (stride 480).
    "voc": TrainConfig(profile="voc", dataset="voc_aug", backbone="resnet101", steps=30000, batch_size=8,
                       crop_size=336, lr=1e-3, train_split="train_aug", finetune_steps=30000, finetune_lr=1e-4,
                       finetune_split="train", eval_crop_size=480, eval_stride=320, checkpoint_every=1000,
                       log_every=10, num_workers=8, fcn_head="official"),
    "cityscapes": TrainConfig(profile="cityscapes", dataset="cityscapes", backbone="resnet101", steps=90000,
                              batch_size=8, crop_size=720, lr=1e-3, eval_crop_size=720, eval_stride=480,
                              checkpoint_every=1000, log_every=10, num_workers=8, fcn_head="official"),
}
PRETRAINED_PROFILES = ("voc", "cityscapes")
TORCHVISION_WEIGHTS = {"resnet50": "resnet50-0676ba61.pth", "resnet101": "resnet101-63fe2227.pth"}
# fields added after runs were committed: left out of the hash while at their defaults, so that
# the hash of an older configuration does not change
_HASH_OMIT_IF_DEFAULT = ("finetune_steps", "finetune_lr", "finetune_split", "eval_crop_size", "eval_stride",
                         "monitor_every", "monitor_split", "fcn_head")
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}


def profile_config(profile: str, **overrides) -> TrainConfig:
    """The :class:`TrainConfig` of ``profile`` with ``overrides`` applied (None values ignored)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
    return dataclasses.replace(PROFILES[profile], **{k: v for k, v in overrides.items() if v is not None})


def config_from_dict(fields: dict) -> TrainConfig:
    """A :class:`TrainConfig` from recorded fields (a ``metrics.json``'s ``config``); unknown keys are
    ignored, so that results written by newer code with more fields still load."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in fields.items() if k in names})


def load_config(path: str | os.PathLike) -> TrainConfig:
    """A :class:`TrainConfig` from a JSON file of its fields (``dataclasses.asdict``)."""
    path = Path(path)
    try:
        return TrainConfig(**read_json(path))
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: not a training config ({one_line(err)})") from None


def check_weights(cfg: TrainConfig) -> None:
    """The real-data profiles start from ImageNet weights: a ``ValueError`` when none are given."""
    if cfg.profile in PRETRAINED_PROFILES and cfg.pretrained is None:
        raise ValueError(f"profile {cfg.profile!r} trains from ImageNet weights: pass --backbone-weights PATH "
                         f"(a torchvision {cfg.backbone} state dict such as {TORCHVISION_WEIGHTS.get(cfg.backbone, '')})")


def run_name(cfg: TrainConfig) -> str:
    """``<base>-<method>[-k3_5][-channel]-s<seed>``: for the AAF family, the kernel-size suffix for
    non-default sizes and ``-channel`` for ``weight_by="channel"`` (control (c))."""
    suffix = ""
    if cfg.method in AAF_METHODS and tuple(cfg.kernel_sizes) != (3, 5, 7):
        suffix = "-k" + "_".join(str(k) for k in cfg.kernel_sizes)
    if cfg.method in AAF_METHODS and cfg.weight_by != "label":
        suffix += f"-{cfg.weight_by}"
    return f"{cfg.base}-{cfg.method}{suffix}-s{cfg.seed}"


def overrides(cfg: TrainConfig) -> dict:
    """The fields of ``cfg`` that differ from its profile's config, other than those in its name
    (base, method, seed and, for AAF, the kernel sizes) and the ImageNet weights file that the
    real-data profiles require (``pretrained``, a local path; it is in the config hash):
    ``{}`` for a run of the profile itself (and for a profile :data:`PROFILES` does not know,
    which is a namespace of its own)."""
    if cfg.profile not in PROFILES:
        return {}
    named = {"base": cfg.base, "method": cfg.method, "seed": cfg.seed, "pretrained": cfg.pretrained}
    if cfg.method in AAF_METHODS:
        named.update(kernel_sizes=cfg.kernel_sizes, weight_by=cfg.weight_by)
    mine, reference = dataclasses.asdict(cfg), dataclasses.asdict(dataclasses.replace(PROFILES[cfg.profile], **named))
    return {k: v for k, v in mine.items() if v != reference[k]}


def run_dir(cfg: TrainConfig, results_root: str | os.PathLike = "results") -> Path:
    """``results/<profile>/<dataset>/<run name>/`` (DESIGN.md section 9); a config that differs from
    its profile's (:func:`overrides`, e.g. ``--steps 2``) gets a folder of its own,
    ``<run name>-c<8 hex digits of the overrides' hash>``, so it never lands on the profile's run."""
    changed = overrides(cfg)
    suffix = f"-c{digest(changed)[:8]}" if changed else ""
    return Path(results_root) / cfg.profile / cfg.dataset / (run_name(cfg) + suffix)


def config_hash(cfg: TrainConfig, data_meta: dict | None = None) -> str:
    """sha256 of the config (and of the dataset's identity, :func:`data_identity`), 16 hex digits."""
    config = dataclasses.asdict(cfg)
    for name in _HASH_OMIT_IF_DEFAULT:
        if config[name] == _DEFAULTS[name]:
            del config[name]
    return digest({"config": config, "data": data_meta or {}})


def data_identity(meta: dict | None) -> dict:
    """What identifies a dataset's content for the hashes, from its ``meta`` (a dataset's ``.meta``,
    the synthetic benchmark's ``meta.json``): its ``spec`` and ``generator`` version (empty for the
    real datasets, which have no meta)."""
    meta = meta or {}
    return {k: meta[k] for k in ("spec", "generator") if k in meta}


def default_data_root(cfg: TrainConfig) -> Path:
    """Where ``aaf train`` keeps the generated synthetic benchmark: ``data/synthetic-<profile>``
    (``$AAF_DATA`` instead of ``data``)."""
    return Path(os.environ.get("AAF_DATA", "data")) / f"{cfg.dataset}-{cfg.profile}"


def prepare_data(cfg: TrainConfig, data_root: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """The dataset root of ``cfg``; the synthetic benchmark is generated there on first use."""
    if data_root is not None:
        return Path(data_root)
    if cfg.dataset != "synthetic":
        raise ValueError(f"dataset {cfg.dataset!r} (profile {cfg.profile}) is read from disk: pass its directory "
                         f"as data_root (--data-root); the book's reproduction chapter shows the layout")
    root = default_data_root(cfg)
    spec = SYNTHETIC_PROFILES[cfg.profile]
    generate_synthetic(root, spec, progress=progress, workers=generation_workers(spec))
    return root


def generation_workers(spec) -> int:
    """Processes to render a synthetic spec with: up to 4 for a benchmark of more than 1,000 images
    (the study's takes ~2 min on 2), else 1 (a worker's start costs more than a small spec).  The
    files do not depend on it."""
    images = sum(n for _, _, n in spec.splits().values())
    return min(4, os.cpu_count() or 1) if images > 1000 else 1
