"""The trainer: every method learns, runs are deterministic and resumable, torchrun matches one process,
and the command line rejects bad input with one line."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aafcore.datasets import SYNTHETIC_PROFILES, build_dataset
from aafcore.losses import downsample_labels
from aafcore.config import METHODS, config_hash, profile_config
from aafcore.train import Trainer, _step_samples, train

ROOT = Path(__file__).resolve().parent.parent


def _aaf(*args, cwd=ROOT, env_extra=None, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "aafcore.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, **kw)


def _params(path: Path) -> dict:
    return torch.load(path, weights_only=False)["model"]


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- sample order


def test_step_samples_are_a_pure_function_and_cover_each_epoch():
    n, bsz = 10, 4
    stream = [i for t in range(5) for i, _ in _step_samples(t, bsz, n, seed=3)]
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:20]) == list(range(10))
    assert _step_samples(2, bsz, n, 3) == _step_samples(2, bsz, n, 3)
    assert _step_samples(2, bsz, n, 3) != _step_samples(2, bsz, n, 4)
    seeds = [s for t in range(5) for _, s in _step_samples(t, bsz, n, 3)]
    assert len(set(seeds)) == len(seeds)


# --------------------------------------------------------------------------- every method learns


@pytest.mark.parametrize("base", ["pspnet", "fcn"])
@pytest.mark.parametrize("method", METHODS)
def test_each_method_lowers_its_loss_on_a_fixed_batch(smoke_data, method, base):
    ds = build_dataset("synthetic", smoke_data, split="train")
    cfg = profile_config("smoke", method=method, base=base, steps=1000, loss_decay=False)
    trainer = Trainer(cfg, ds.num_classes, "cpu", ds.ignore_index)
    images = torch.stack([ds[i]["image"][:, :48, :48] for i in range(4)])
    labels = torch.stack([ds[i]["label"][:48, :48] for i in range(4)])
    records = [trainer.step(images, labels, t) for t in range(25)]
    first = np.mean([r["loss"] for r in records[:3]])
    last = np.mean([r["loss"] for r in records[-3:]])
    assert last < 0.8 * first, (method, [round(r["loss"], 3) for r in records])
    if method == "aaf":
        w = trainer.objective.weights()
        assert np.allclose(np.sum(w["edge_weights"], 1), 1.0)
        # the weight logits were pushed away from their zero initialisation (gradient ascent)
        assert trainer.objective.aaf.edge_logits.abs().max() > 0


def test_aaf_weight_logits_ascend_the_affinity_loss(smoke_data):
    """The weight-logit step is ascent: after it, the AAF loss at fixed logits is larger."""
    ds = build_dataset("synthetic", smoke_data, split="train")
    cfg = profile_config("smoke", method="aaf", steps=1000)
    trainer = Trainer(cfg, ds.num_classes, "cpu", ds.ignore_index)
    images = torch.stack([ds[i]["image"] for i in range(2)])
    labels = torch.stack([ds[i]["label"] for i in range(2)])
    for t in range(3):
        trainer.step(images, labels, t)
    trainer.model.eval()
    with torch.no_grad():
        logits = trainer.model(images)
    small = downsample_labels(labels, tuple(logits.shape[-2:]))
    objective = trainer.objective
    before = objective.aaf(logits, small)
    objective.optimizer.zero_grad()
    before.backward()
    objective.optimizer.step()
    with torch.no_grad():
        after = objective.aaf(logits, small)
    assert after > before


# --------------------------------------------------------------------------- whole runs


def test_train_writes_metrics_log_and_checkpoint_and_skips_a_finished_run(smoke_data, tmp_path):
    cfg = profile_config("smoke", method="aaf")
    out = tmp_path / "run"
    result = train(cfg, out, data_root=smoke_data, progress=False)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(result))
    m = saved["metrics"]
    assert len(m["iou"]) == len(saved["class_names"]) and 0 <= m["miou"] <= 1
    assert 0 <= m["pixel_accuracy"] <= 1
    assert {"miou_thin", "miou_large"} <= set(m)
    assert len(saved["aaf"]["effective_kernel_size"]) == len(saved["class_names"])
    assert all(3 <= k <= 7 for k in saved["aaf"]["effective_kernel_size"])
    prov = saved["provenance"]
    assert prov["wall_seconds"] > 0 and prov["device"] == "cpu" and prov["packages"]["torch"]
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(cfg.steps))
    assert all({"loss", "ce", "aux", "lr", "decay"} <= set(r) for r in log)
    assert log[0]["lr"] == pytest.approx(cfg.lr) and log[-1]["lr"] < cfg.lr
    assert "effective_kernel_size" in log[0]
    assert (out / "checkpoint.pt").exists()
    assert not list(out.glob("*.tmp"))
    # a second call with the same config is skipped: the file is not rewritten
    mtime = (out / "metrics.json").stat().st_mtime_ns
    again = train(cfg, out, data_root=smoke_data, progress=False)
    assert again == saved and (out / "metrics.json").stat().st_mtime_ns == mtime
    # another config is not skipped
    assert config_hash(cfg) != config_hash(dataclasses.replace(cfg, seed=1))


@pytest.mark.parametrize("method", ["aaf", "gan", "aaf_frozen"])
def test_resume_is_bit_identical_to_an_uninterrupted_run(smoke_data, tmp_path, method):
    cfg = profile_config("smoke", method=method, steps=6, checkpoint_every=2)
    full = train(cfg, tmp_path / "full", data_root=smoke_data, progress=False)
    assert train(cfg, tmp_path / "cut", data_root=smoke_data, progress=False, stop_after=3) == {}
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)["step"] == 2
    resumed = train(cfg, tmp_path / "cut", data_root=smoke_data, progress=False, resume=True)
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)
    assert _same_state(a["model"], b["model"])
    key = "discriminator" if method == "gan" else "aux"
    assert _same_state(a[key], b[key])
    assert full["metrics"] == resumed["metrics"]
    assert resumed["provenance"]["resumed_from_step"] == 2
    full_log = (tmp_path / "full" / "train_log.jsonl").read_text().splitlines()
    cut_log = (tmp_path / "cut" / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(x)["loss"] for x in full_log] == [json.loads(x)["loss"] for x in cut_log]


@pytest.mark.slow
def test_sigkill_then_resume_ends_with_the_same_metrics(smoke_data, tmp_path):
    args = ["train", "--profile", "smoke", "--method", "affinity", "--steps", "60",
            "--checkpoint-every", "5", "--data-root", str(smoke_data), "--no-progress"]
    proc = subprocess.Popen([sys.executable, "-m", "aafcore.cli", *args, "--out", str(tmp_path / "killed")],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (tmp_path / "killed" / "metrics.json").exists()
    step = torch.load(ckpt, weights_only=False)["step"]
    assert 0 < step < 60
    r = _aaf(*args, "--out", str(tmp_path / "killed"), "--resume")
    assert r.returncode == 0, r.stderr
    r = _aaf(*args, "--out", str(tmp_path / "whole"))
    assert r.returncode == 0, r.stderr
    killed = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    assert killed["provenance"]["resumed_from_step"] >= step
    assert killed["metrics"] == whole["metrics"]
    assert _same_state(_params(tmp_path / "killed" / "checkpoint.pt"), _params(tmp_path / "whole" / "checkpoint.pt"))


@pytest.mark.slow
def test_two_process_torchrun_matches_one_process(smoke_data, tmp_path):
    """Same global batch, synchronised batch norm, gloo: the runs agree up to float reordering.

    Early training from scratch amplifies float-summation differences by ~100x per step at the
    smoke profile's learning rate (a 1-thread and a 2-thread single-process run drift apart just as
    much), so the comparison uses 3 steps at a small learning rate.  Dropout masks are drawn per
    process and cannot match a single process's, which is inside the tolerance at this rate.
    """
    common = ["train", "--profile", "smoke", "--method", "aaf", "--steps", "3", "--batch-size", "4",
              "--lr", "0.0005", "--data-root", str(smoke_data), "--no-progress", "--device", "cpu"]
    one = _aaf(*common, "--out", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "aafcore.cli", *common, "--out", str(tmp_path / "two")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    a = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=False)
    init = Trainer(profile_config("smoke", method="aaf"), len(a["aux"]["edge_logits"]), "cpu")
    # the AAF means are over each process's valid pairs (as in multi-tower training), not the
    # global batch's, so its weight logits agree less tightly than the network's parameters
    for part, start, tol in (("model", init.model.state_dict(), 0.02), ("aux", init.objective.aaf.state_dict(), 0.05)):
        assert a[part].keys() == b[part].keys()
        keys = [k for k in a[part] if a[part][k].is_floating_point()]
        diff = torch.cat([(a[part][k] - b[part][k]).flatten() for k in keys]).norm()
        update = torch.cat([(a[part][k] - start[k]).flatten() for k in keys]).norm()
        # the two runs' updates agree (a wrong gradient average or a frozen layer is ~100% off)
        assert update > 0 and diff < tol * update, (part, float(diff), float(update))
    m1 = json.loads((tmp_path / "one" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert m2["provenance"]["processes"] == 2 and m1["provenance"]["processes"] == 1
    l1 = [json.loads(x) for x in (tmp_path / "one" / "train_log.jsonl").read_text().splitlines()]
    l2 = [json.loads(x) for x in (tmp_path / "two" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in l1] == [r["step"] for r in l2] == [0, 1, 2]
    for r1, r2 in zip(l1, l2):  # rank 0 logs the global batch's CE (mean over all valid pixels)
        assert r2["ce"] == pytest.approx(r1["ce"], rel=1e-2)  # dropout masks differ


# --------------------------------------------------------------------------- bad input


def _one_line_error(r, *needles):
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aaf: error:"), r.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.slow
@pytest.mark.parametrize("args, needle", [
    (["--method", "crf"], "crf"),
    (["--base", "unet"], "unet"),
    (["--profile", "huge"], "huge"),
    (["--steps", "0"], "steps"),
    (["--kernel-sizes", "3,4"], "kernel sizes"),
    (["--bogus"], "--bogus"),
])
def test_train_rejects_bad_options_in_one_line(args, needle, tmp_path):
    _one_line_error(_aaf("train", "--out", str(tmp_path / "x"), *args), needle)
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_train_rejects_a_missing_data_root(tmp_path):
    missing = tmp_path / "nowhere"
    _one_line_error(_aaf("train", "--profile", "smoke", "--data-root", str(missing), "--out", str(tmp_path / "r")),
                    str(missing))


@pytest.mark.slow
def test_train_rejects_a_corrupt_label_file_by_name(smoke_data, tmp_path):
    root = tmp_path / "bad"
    shutil.copytree(smoke_data, root)
    ds = build_dataset("synthetic", root, split="train")
    path = root / "SegmentationClass" / f"{ds.ids[0]}.png"
    img = Image.open(path)
    values = np.array(img)
    values[0, 0] = 40
    bad = Image.fromarray(values, mode="P")
    bad.putpalette(img.getpalette())
    bad.save(path)
    r = _aaf("train", "--profile", "smoke", "--data-root", str(root), "--out", str(tmp_path / "r"), "--no-progress")
    _one_line_error(r, path.name)
    assert not (tmp_path / "r" / "metrics.json").exists()


@pytest.mark.slow
def test_aaf_data_generates_and_rejects_unknown_profiles(tmp_path):
    r = _aaf("data", "synthetic", "--profile", "smoke", "--out", str(tmp_path / "d"), "--no-progress")
    assert r.returncode == 0, r.stderr
    meta = json.loads((tmp_path / "d" / "meta.json").read_text())
    assert meta["spec"] == dataclasses.asdict(SYNTHETIC_PROFILES["smoke"])
    thin = [c for c in meta["classes"] if c["group"] == "thin"]
    assert thin and all(c["width_px"] >= 1 for c in thin)
    _one_line_error(_aaf("data", "synthetic", "--profile", "huge", "--out", str(tmp_path / "e")), "huge")
    assert not (tmp_path / "e").exists()


def test_config_is_checked_when_made_and_validate_is_deprecated():
    from aafcore.config import TrainConfig

    with pytest.raises(ValueError, match="unknown method 'crf'"):
        TrainConfig(method="crf")
    with pytest.raises(ValueError, match="kernel sizes must be odd integers >= 3"):
        profile_config("smoke", kernel_sizes=(3, 4))
    cfg = TrainConfig(kernel_sizes=[3, 5], scale_range=[1, 2])   # JSON gives lists
    assert cfg.kernel_sizes == (3, 5) and cfg.scale_range == (1.0, 2.0)
    with pytest.warns(DeprecationWarning, match="checked when it is made"):
        assert cfg.validate() is cfg


@pytest.mark.parametrize("field, value", [("lr", float("nan")), ("lr", float("inf")), ("lr", 0.0),
                                          ("finetune_lr", -1e-4), ("gan_lr", float("nan")), ("margin", float("inf")),
                                          ("emb_margin", 0.0), ("momentum", float("nan")), ("weight_decay", -5e-4),
                                          ("lambda_edge", float("nan")), ("head_lr_mult", "10")])
def test_every_float_option_is_checked_up_front(field, value):
    """Issue 13, case 4: --lr nan / inf used to pass the checks (the message then blamed the loss)."""
    with pytest.raises(ValueError, match=f"{field} must be a finite number"):
        profile_config("smoke", **{field: value})


def test_the_learning_curve_is_logged_and_survives_a_resume(smoke_data, tmp_path):
    cfg = profile_config("smoke", steps=6, checkpoint_every=2, monitor_every=2, monitor_split="val")
    plain = profile_config("smoke", steps=6, checkpoint_every=2)
    assert config_hash(plain) == config_hash(dataclasses.replace(cfg, monitor_every=0, monitor_split="tuning"))
    assert config_hash(cfg) != config_hash(plain)
    train(cfg, tmp_path / "full", data_root=smoke_data, progress=False)
    full = [json.loads(line) for line in (tmp_path / "full" / "monitor_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in full] == [2, 4, 6] and all(0 <= r["miou"] <= 1 and r["split"] == "val" for r in full)
    assert {"miou_thin", "miou_large", "pixel_accuracy"} <= set(full[0])
    train(cfg, tmp_path / "cut", data_root=smoke_data, progress=False, stop_after=3)   # checkpoint at step 2
    train(cfg, tmp_path / "cut", data_root=smoke_data, progress=False)
    assert (tmp_path / "cut" / "monitor_log.jsonl").read_text() == (tmp_path / "full" / "monitor_log.jsonl").read_text()
