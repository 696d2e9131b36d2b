"""Issue 13, case 4: a diverged training stops with its step, and is never saved as a success.

No non-finite checkpoint and no ``metrics.json`` from a diverged model; the last finite
checkpoint is kept; the all-ignored batch and non-finite logits are named.
"""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import pytest
import torch

from aafcore.cli import main
from checks import blank_labels
from aafcore.config import profile_config
from aafcore.runs import load_checkpoint
from aafcore.safety import all_finite
from aafcore.train import Trainer, _checkpoint, _step, train


def _finite_checkpoint(path: Path) -> bool:
    return all_finite(load_checkpoint(path))


def test_a_huge_learning_rate_stops_with_the_step_and_writes_no_result(smoke_data, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--profile", "smoke", "--lr", "1000", "--steps", "4", "--out", str(out),
            "--data-root", str(smoke_data), "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "training diverged at step" in err[0] and "lower the learning rate" in err[0], err
    assert re.search(r"step \d+ \(loss [-+.e\dinfa]+, lr [-+.e\d]+\)", err[0]), err[0]
    assert not (out / "metrics.json").exists()
    assert not (out / "checkpoint.pt").exists() or _finite_checkpoint(out / "checkpoint.pt")


def test_the_last_finite_checkpoint_is_kept_and_resume_reports_the_same_divergence(smoke_data, tmp_path):
    cfg = profile_config("smoke", lr=300.0, steps=40, checkpoint_every=1)
    out = tmp_path / "run"
    with pytest.raises(FloatingPointError, match=r"training diverged at step (\d+)") as first:
        train(cfg, out, data_root=smoke_data, progress=False)
    step = int(str(first.value).split("at step ")[1].split()[0])
    assert "the last finite checkpoint" in str(first.value)
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["step"] == step and all_finite(state)        # written after step - 1, finite
    assert not (out / "metrics.json").exists()
    with pytest.raises(FloatingPointError, match=f"training diverged at step {step} "):
        train(cfg, out, data_root=smoke_data, progress=False)   # resumes, and diverges where it did


def test_a_batch_without_labelled_pixels_is_named(smoke_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(smoke_data, data)
    blank_labels(data, "train_")
    with pytest.raises(FloatingPointError, match=r"step 0: every label pixel of its batch is ignore_index \(255\)"):
        train(profile_config("smoke"), tmp_path / "run", data_root=data, progress=False)
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_non_finite_logits_in_the_aaf_loss_name_the_step(tmp_path):
    trainer = Trainer(profile_config("smoke", method="aaf"), 5, "cpu")
    images, labels = torch.randn(2, 3, 48, 48), torch.randint(0, 5, (2, 48, 48))
    with torch.no_grad():
        for p in trainer.model.head_parameters():
            p.fill_(math.inf)
    with pytest.raises(FloatingPointError, match="training diverged at step 7 .*the logits are not finite"):
        _step(trainer, images, labels, 7, tmp_path)


def test_non_finite_batch_norm_statistics_stop_the_step(tmp_path):
    trainer = Trainer(profile_config("smoke"), 5, "cpu")
    images, labels = torch.randn(2, 3, 48, 48), torch.randint(0, 5, (2, 48, 48))
    assert _step(trainer, images, labels, 0, tmp_path)["loss"] > 0 and trainer.finite()
    bn = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn.running_var.fill_(math.inf)       # what a huge learning rate did, with a finite loss
    assert not trainer.finite()
    assert not all_finite(trainer.state_dict(1))
    with pytest.raises(FloatingPointError, match="step 1 .*batch-norm statistics are not finite"):
        _step(trainer, images, labels, 1, tmp_path)


def test_a_non_finite_parameter_is_never_written_to_a_checkpoint(tmp_path):
    trainer = Trainer(profile_config("smoke", method="aaf"), 5, "cpu")
    labels = torch.randint(0, 5, (2, 48, 48))
    assert trainer.finite(parameters=False) and trainer.finite()
    _checkpoint(trainer, 3, tmp_path, None, {"loss": 1.0}, labels)
    kept = (tmp_path / "checkpoint.pt").read_bytes()
    with torch.no_grad():   # a weight logit of the AAF objective, not the network: the full check sees it
        trainer.objective.aaf.edge_logits.fill_(math.nan)
    assert trainer.finite(parameters=False) and not trainer.finite()
    with pytest.raises(FloatingPointError, match="diverged at step 3 .*optimiser state are not finite after it; "
                                                 ".*the last finite checkpoint"):
        _checkpoint(trainer, 4, tmp_path, None, {"loss": 1.0}, labels)
    assert (tmp_path / "checkpoint.pt").read_bytes() == kept and not list(tmp_path.glob(".*.tmp"))
