"""Issue 14's controls: what AAF adds over a multi-size affinity loss.

``aaf_frozen`` (a) keeps the size weights at their uniform start (no adversary), ``aaf_min`` (b)
minimises them instead of maximising; (c) is ``aaf`` with ``weight_by="channel"`` (a config field).
"""

from __future__ import annotations

import torch

from aafcore.config import profile_config, run_dir, run_name
from aafcore.objectives import AAF_METHODS, METHODS
from aafcore.report.results import _AAF_METHODS, METHOD_ORDER
from aafcore.train import Trainer


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 5, (2, 6, 6), generator=g).repeat_interleave(8, 1).repeat_interleave(8, 2)
    return torch.randn(2, 3, 48, 48, generator=g), labels


def _trainers(*methods):
    return {m: Trainer(profile_config("smoke", method=m), 5, "cpu") for m in methods}


def _step_each(trainers: dict, images, labels, t: int) -> None:
    """One step of every trainer with the same dropout masks (the global generator reseeded)."""
    for trainer in trainers.values():
        torch.manual_seed(1234)
        trainer.step(images, labels, t)


def test_the_controls_are_registered_and_named():
    assert {"aaf_frozen", "aaf_min"} <= set(METHODS) and set(AAF_METHODS) == {"aaf", "aaf_frozen", "aaf_min"}
    assert tuple(_AAF_METHODS) == AAF_METHODS and set(METHODS) <= set(METHOD_ORDER)
    cfg = profile_config("cpu", method="aaf_frozen", kernel_sizes=(3, 5))
    assert run_name(cfg) == "pspnet-aaf_frozen-k3_5-s0" and run_dir(cfg).name == run_name(cfg)
    channel = profile_config("cpu", method="aaf", weight_by="channel")      # control (c): a run of its own
    assert run_name(channel) == "pspnet-aaf-channel-s0" and run_dir(channel).name == run_name(channel)
    assert run_name(profile_config("cpu", method="aaf")) == "pspnet-aaf-s0"


def test_frozen_weights_never_move_and_the_first_step_equals_aaf():
    trainers = _trainers("aaf", "aaf_frozen")
    images, labels = _batch()
    _step_each(trainers, images, labels, 0)
    aaf, frozen = trainers["aaf"], trainers["aaf_frozen"]
    # at step 0 the weights are the same (uniform), so the network's update is the same
    for (name, a), (_, b) in zip(aaf.model.state_dict().items(), frozen.model.state_dict().items()):
        assert torch.equal(a, b), name
    assert not torch.equal(aaf.objective.aaf.edge_logits, torch.zeros_like(aaf.objective.aaf.edge_logits))
    for _ in range(3):
        frozen.step(images, labels, 1)
    assert torch.equal(frozen.objective.aaf.edge_logits, torch.zeros(5, 3))
    assert torch.equal(frozen.objective.aaf.not_edge_logits, torch.zeros(5, 3))
    assert frozen.objective.optimizer is None and "aux_optimizer" not in frozen.state_dict(1)


def test_minimised_weights_move_opposite_to_the_adversary():
    trainers = _trainers("aaf", "aaf_min")
    images, labels = _batch(1)
    _step_each(trainers, images, labels, 0)
    up = trainers["aaf"].objective.aaf.edge_logits.detach()
    down = trainers["aaf_min"].objective.aaf.edge_logits.detach()
    assert up.abs().sum() > 0 and torch.allclose(down, -up, rtol=1e-6, atol=1e-9)
