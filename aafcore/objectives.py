"""What each method adds to the cross-entropy: one small objective class per method of the paper.

The trainer (:mod:`aafcore.train`) computes ``loss = CE + decay(t) · objective.loss(...)`` and
asks the objective for everything else that differs between methods: its own parameters and
optimiser, its per-step update, what it puts in a checkpoint, in the training log and in
``metrics.json``.  A new method (or a control) is one subclass of :class:`Objective` registered
in :data:`OBJECTIVES`; the trainer does not branch on the method's name.

==========  ==========================================================================================
name        auxiliary loss (DESIGN.md section 5)
==========  ==========================================================================================
baseline    none
affinity    :class:`~aafcore.losses.AffinityFieldLoss` (3x3, Eq. 3)
aaf         :class:`~aafcore.losses.AdaptiveAffinityFieldLoss` (Eq. 6-7); its weight logits are
            *maximised* with momentum SGD at the backbone's learning rate and poly schedule
emb         :class:`~aafcore.losses.PixelEmbeddingLoss` on the head's penultimate features (Eq. 9)
gan         the segmenter's side of Eq. 8 against a :class:`~aafcore.losses.PatchDiscriminator`
            trained alongside with Adam after every step of the network
aaf_frozen  control (a): the AAF loss with its size weights frozen at their uniform start, no
            adversary (a multi-size affinity field loss): what the adversary adds
aaf_min     control (b): the AAF loss with its size weights *minimised* instead of maximised
==========  ==========================================================================================

The AAF family (:data:`AAF_METHODS`) shares the kernel sizes, ``weight_by`` (control (c) is
``aaf`` with ``weight_by="channel"``), the ``aux`` checkpoint entry and the ``aaf`` block of
``metrics.json`` (effective kernel sizes).

The order of the calls in one step is fixed by the trainer::

    objective.loss(logits, features, labels)     # before backward
    objective.before_network_step(distributed)   # after backward: AAF's gradient ascent
    <the network's optimiser steps>
    objective.after_network_step(distributed)    # GAN's discriminator update; returns its loss or None
"""

from __future__ import annotations

import torch
from torch import Tensor

from aafcore import losses
from aafcore.distributed import average_gradients

__all__ = ["Objective", "AffinityObjective", "AAFObjective", "FrozenAAFObjective", "MinimisedAAFObjective",
           "EmbeddingObjective", "GANObjective", "OBJECTIVES", "METHODS", "AAF_METHODS", "build_objective"]


class Objective:
    """The baseline: cross-entropy alone (no auxiliary loss, no parameters of its own).

    ``cfg`` is the run's :class:`~aafcore.config.TrainConfig`; ``optimizer`` is the optimiser of
    the objective's own parameters (``None`` when it has none) and ``follows_schedule`` says
    whether its learning rate follows the network's poly schedule.
    """

    name = "baseline"
    with_features = False     # whether loss() needs the head's penultimate features

    def __init__(self, cfg, num_classes: int, ignore_index: int, device: torch.device):
        self.cfg, self.num_classes, self.ignore_index, self.device = cfg, num_classes, ignore_index, device
        self.optimizer: torch.optim.Optimizer | None = None
        self.follows_schedule = False

    def loss(self, logits: Tensor, features: Tensor | None, labels: Tensor) -> Tensor:
        """The auxiliary loss (before the decay weight): ``logits [N, C, h, w]`` float32,
        ``features [N, D, h, w]`` or None, ``labels [N, h, w]`` at the logits' size.  Scalar."""
        return logits.new_zeros(())

    def before_network_step(self, distributed: bool) -> None:
        """After ``backward()``, before the network's optimiser steps."""

    def after_network_step(self, distributed: bool) -> Tensor | None:
        """After the network's optimiser stepped; returns a loss to log as ``d_loss`` or None."""
        return None

    def state_dict(self) -> dict:
        """Entries of the checkpoint (state dicts only)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` put in the checkpoint ``state``."""

    def log_record(self) -> dict:
        """Extra entries of a training-log record (written every ``10 · log_every`` steps)."""
        return {}

    def result(self) -> dict:
        """Extra top-level entries of the run's ``metrics.json``."""
        return {}


class AffinityObjective(Objective):
    """``affinity``: the 3x3 affinity field loss (Eq. 3)."""

    name = "affinity"

    def __init__(self, cfg, num_classes, ignore_index, device):
        super().__init__(cfg, num_classes, ignore_index, device)
        self.affinity = losses.AffinityFieldLoss(num_classes, cfg.margin, cfg.lambda_edge, cfg.lambda_not_edge,
                                                 ignore_index)

    def loss(self, logits, features, labels):
        return self.affinity(logits, labels)


class AAFObjective(Objective):
    """``aaf``: adaptive affinity fields (Eq. 6-7) with adversarially learned size weights.

    The weight logits ``[C, K]`` are maximised (``SGD(maximize=True)``, momentum, no weight decay)
    at the backbone's learning rate and poly schedule; their step comes before the network's.
    """

    name = "aaf"
    maximize = True           # the adversary: the size weights ascend the loss

    def __init__(self, cfg, num_classes, ignore_index, device):
        super().__init__(cfg, num_classes, ignore_index, device)
        self.aaf = losses.AdaptiveAffinityFieldLoss(
            num_classes, cfg.kernel_sizes, cfg.margin, cfg.lambda_edge, cfg.lambda_not_edge, ignore_index,
            weight_by=cfg.weight_by).to(device)
        self.optimizer = torch.optim.SGD([{"params": list(self.aaf.parameters()), "initial_lr": cfg.lr}], lr=cfg.lr,
                                         momentum=cfg.momentum, weight_decay=0.0, maximize=self.maximize)
        self.follows_schedule = True

    def loss(self, logits, features, labels):
        return self.aaf(logits, labels)

    def before_network_step(self, distributed):
        if distributed:
            average_gradients(self.aaf.parameters())
        self.optimizer.step()

    def state_dict(self):
        return {"aux": self.aaf.state_dict(), "aux_optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state):
        self.aaf.load_state_dict(state["aux"])
        self.optimizer.load_state_dict(state["aux_optimizer"])

    def weights(self) -> dict:
        """The kernel-size weights: softmax over sizes as ``[C, K]`` lists, and the effective sizes ``[C]``."""
        edge, not_edge = self.aaf.weights()
        return {"kernel_sizes": list(self.cfg.kernel_sizes),
                "edge_weights": edge.detach().cpu().tolist(),
                "not_edge_weights": not_edge.detach().cpu().tolist(),
                "effective_kernel_size": self.aaf.effective_kernel_size("edge").detach().cpu().tolist(),
                "effective_kernel_size_not_edge":
                    self.aaf.effective_kernel_size("not_edge").detach().cpu().tolist()}

    def log_record(self):
        w = self.weights()
        return {"effective_kernel_size": w["effective_kernel_size"], "edge_weights": w["edge_weights"]}

    def result(self):
        return {"aaf": self.weights()}


class MinimisedAAFObjective(AAFObjective):
    """``aaf_min``, control (b): as ``aaf``, but the size weights *descend* the loss (the opposite of
    the paper's adversary), same optimiser, rate and schedule."""

    name = "aaf_min"
    maximize = False


class FrozenAAFObjective(AAFObjective):
    """``aaf_frozen``, control (a): the AAF loss with its size weights frozen at their start (zero
    logits: uniform weights ``1/K`` over the sizes, for every class), no optimiser.  The same loss
    as ``aaf`` at step 0; the difference to ``aaf`` is what the adversary adds."""

    name = "aaf_frozen"

    def __init__(self, cfg, num_classes, ignore_index, device):
        super().__init__(cfg, num_classes, ignore_index, device)
        self.aaf.requires_grad_(False)
        self.optimizer = None
        self.follows_schedule = False

    def before_network_step(self, distributed):
        pass

    def state_dict(self):
        return {"aux": self.aaf.state_dict()}

    def load_state_dict(self, state):
        self.aaf.load_state_dict(state["aux"])


class EmbeddingObjective(Objective):
    """``emb``: the contrastive pixel-embedding loss (Eq. 9) on L2-normalised penultimate features."""

    name = "emb"
    with_features = True

    def __init__(self, cfg, num_classes, ignore_index, device):
        super().__init__(cfg, num_classes, ignore_index, device)
        self.embedding = losses.PixelEmbeddingLoss(cfg.emb_margin, 3, cfg.lambda_edge, cfg.lambda_not_edge,
                                                   ignore_index)

    def loss(self, logits, features, labels):
        return self.embedding(features.float(), labels)


class GANObjective(Objective):
    """``gan``: the segmenter's side of Eq. 8; the patch discriminator (Adam, ``gan_lr``, betas
    (0.5, 0.999), constant learning rate) learns after every step of the network."""

    name = "gan"

    def __init__(self, cfg, num_classes, ignore_index, device):
        super().__init__(cfg, num_classes, ignore_index, device)
        self.discriminator = losses.PatchDiscriminator(num_classes, depth=cfg.gan_depth).to(device)
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=cfg.gan_lr, betas=(0.5, 0.999))
        self._maps: tuple[Tensor, Tensor] | None = None

    def loss(self, logits, features, labels):
        real, fake = losses.gan_label_maps(logits, labels, self.num_classes, self.ignore_index)
        self._maps = (real, fake)
        self.discriminator.requires_grad_(False)   # the segmenter's loss moves the network only
        adversarial = losses.segmenter_adversarial_loss(self.discriminator(fake))
        self.discriminator.requires_grad_(True)
        return adversarial

    def after_network_step(self, distributed):
        real, fake = self._maps
        self._maps = None
        d_loss = losses.discriminator_loss(self.discriminator(real), self.discriminator(fake.detach()))
        d_loss.backward()
        if distributed:
            average_gradients(self.discriminator.parameters())
        self.optimizer.step()
        return d_loss

    def state_dict(self):
        return {"discriminator": self.discriminator.state_dict(), "aux_optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state):
        self.discriminator.load_state_dict(state["discriminator"])
        self.optimizer.load_state_dict(state["aux_optimizer"])


OBJECTIVES: dict[str, type[Objective]] = {cls.name: cls for cls in (
    Objective, AffinityObjective, AAFObjective, EmbeddingObjective, GANObjective, FrozenAAFObjective,
    MinimisedAAFObjective)}
METHODS = tuple(OBJECTIVES)
AAF_METHODS = tuple(name for name, cls in OBJECTIVES.items() if issubclass(cls, AAFObjective))


def build_objective(cfg, num_classes: int, ignore_index: int, device: torch.device) -> Objective:
    """The objective of ``cfg.method``."""
    if cfg.method not in OBJECTIVES:
        raise ValueError(f"unknown method {cfg.method!r}; choose from {', '.join(METHODS)}")
    return OBJECTIVES[cfg.method](cfg, num_classes, ignore_index, device)
