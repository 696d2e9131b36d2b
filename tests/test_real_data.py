"""The paper-scale path on real-format fixtures: VOC 2012 + SBD, Cityscapes, GTA5 (issue 6).

Fixture trees in each dataset's on-disk format are written by ``aafcore.testing.write_voc_fixture``
and ``aafcore.testing.write_*_fixture``; the ``voc`` and ``cityscapes`` profiles run end to
end on them at fixture scale (two training stages, ImageNet-weights loading from a local file,
sliding-window evaluation), in one process and in two gloo processes under torchrun.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from aafcore.datasets import CITYSCAPES_CLASSES, DatasetError, build_dataset
from aafcore.datasets.voc import SPLITS_DIR, read_split_list
from aafcore.config import PROFILES, config_from_dict, config_hash, profile_config
from aafcore.distributed import torchrun_command
from aafcore.evaluate import evaluate_run
from aafcore.inference import PAPER_SCALES, InferenceConfig
from aafcore.testing import write_cityscapes_fixture, write_gta5_fixture, write_voc_fixture
from aafcore.train import Trainer, _step_samples, train, train_distributed

ROOT = Path(__file__).resolve().parent.parent
VOC_TRAIN = ("2007_000032", "2007_000039")
VOC_VAL = ("2007_000033", "2007_000042")
SBD_TRAIN = ("2008_000002", "2007_000039", "2007_000033")
SBD_VAL = ("2008_000003",)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    """VOC + SBD, Cityscapes and GTA5 fixture trees and a torchvision ResNet-18 weights file."""
    root = tmp_path_factory.mktemp("real")
    truth = write_voc_fixture(root / "voc", VOC_TRAIN, VOC_VAL, SBD_TRAIN, SBD_VAL, size=(60, 80))
    write_cityscapes_fixture(root / "cityscapes", {"train": 2, "val": 2}, size=(64, 128))
    write_gta5_fixture(root / "gta5", n=3, extra_ids=("02501",))
    weights = root / "resnet18-imagenet.pth"   # stands in for torchvision's resnet18-f37072fd.pth
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    return {"root": root, "voc_truth": truth, "weights": weights}


def _tiny(profile: str, data: dict, **overrides):
    """The profile at fixture scale: every field the paper sets stays, only sizes shrink."""
    small = dict(backbone="resnet18", pretrained=str(data["weights"]), steps=2, batch_size=2, crop_size=40,
                 eval_crop_size=40, eval_stride=24, checkpoint_every=2, log_every=1, num_workers=0)
    if PROFILES[profile].finetune_steps:
        small["finetune_steps"] = 2
    return profile_config(profile, **{**small, **overrides})


# --------------------------------------------------------------------------- VOC + SBD


def test_shipped_voc_split_lists_are_the_papers():
    train_aug = read_split_list(SPLITS_DIR / "voc_train_aug.txt")
    train = read_split_list(SPLITS_DIR / "voc_train.txt")
    val = read_split_list(SPLITS_DIR / "voc_val.txt")
    assert (len(train_aug), len(train), len(val)) == (10582, 1464, 1449)
    assert len(set(train_aug)) == len(train_aug)
    assert set(train) <= set(train_aug) and not set(train_aug) & set(val)


def test_voc_aug_train_aug_is_sbd_plus_voc_train_minus_val(data):
    ds = build_dataset("voc_aug", data["root"] / "voc", split="train_aug")
    expected = sorted((set(SBD_TRAIN) | set(SBD_VAL) | set(VOC_TRAIN)) - set(VOC_VAL))
    assert ds.ids == expected and "2007_000033" not in ds.ids   # in SBD train but VOC val
    assert ds.num_classes == 21 and ds.ignore_index == 255


def test_voc_aug_prefers_voc_annotations_and_reads_sbd_mat_otherwise(data):
    ds = build_dataset("voc_aug", data["root"] / "voc", split="train_aug")
    truth = data["voc_truth"]
    sources = {}
    for i, ident in enumerate(ds.ids):
        image, label, instance = ds.load_raw(i)
        source = "voc" if "voc_label" in truth[ident] else "sbd"
        sources[ident] = source
        np.testing.assert_array_equal(label, truth[ident][f"{source}_label"])
        np.testing.assert_array_equal(instance, truth[ident][f"{source}_instance"])
        assert image.shape == label.shape + (3,) and image.dtype == np.uint8
    # 2007_000039 is in both: VOC's annotation, with its 255 void band, wins over SBD's
    assert sources == {"2007_000032": "voc", "2007_000039": "voc", "2008_000002": "sbd", "2008_000003": "sbd"}
    assert (ds.load_raw(ds.ids.index("2007_000039"))[1] == 255).any()
    assert not (ds.load_raw(ds.ids.index("2008_000002"))[1] == 255).any()   # SBD has no void band
    item = ds[ds.ids.index("2008_000002")]
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 60, 80)
    assert item["label"].dtype == torch.int64 and item["instance"].max() >= 1


def test_voc_aug_train_and_val_are_vocs_own_lists(data):
    root = data["root"] / "voc"
    assert build_dataset("voc_aug", root, split="train").ids == list(VOC_TRAIN)
    assert build_dataset("voc_aug", root, split="val").ids == list(VOC_VAL)
    voc_val = build_dataset("voc", root, split="val")
    assert voc_val.ids == list(VOC_VAL)
    np.testing.assert_array_equal(voc_val.load_raw(0)[1], data["voc_truth"][VOC_VAL[0]]["voc_label"])


def _one_line(err: Exception, *needles: str) -> None:
    text = str(err)
    assert "\n" not in text
    for needle in needles:
        assert needle in text, text


def test_voc_aug_bad_trees_give_one_line_errors(data, tmp_path):
    import shutil

    with pytest.raises(DatasetError) as e:
        build_dataset("voc_aug", data["root"] / "voc", split="trainaug")
    _one_line(e.value, "trainaug")
    broken = tmp_path / "voc"
    shutil.copytree(data["root"] / "voc", broken)
    (broken / "benchmark_RELEASE" / "dataset" / "cls" / "2008_000003.mat").unlink()
    with pytest.raises(DatasetError) as e:
        build_dataset("voc_aug", broken, split="train_aug")
    _one_line(e.value, "2008_000003.mat")
    (broken / "benchmark_RELEASE" / "dataset" / "cls" / "2008_000003.mat").write_bytes(b"not a mat file")
    ds = build_dataset("voc_aug", broken, split="train_aug")
    with pytest.raises(DatasetError) as e:
        ds.load_raw(ds.ids.index("2008_000003"))
    _one_line(e.value, "2008_000003.mat")
    shutil.rmtree(broken / "benchmark_RELEASE")
    with pytest.raises(DatasetError) as e:
        build_dataset("voc_aug", broken, split="train_aug")
    _one_line(e.value, "SBD not found", str(broken))
    assert build_dataset("voc_aug", broken, split="val").ids == list(VOC_VAL)   # val needs no SBD


def test_sbd_ids_without_instance_files_have_no_instances(data, tmp_path):
    import shutil

    tree = tmp_path / "voc"
    shutil.copytree(data["root"] / "voc", tree)
    shutil.rmtree(tree / "benchmark_RELEASE" / "dataset" / "inst")
    ds = build_dataset("voc_aug", tree, split="train_aug")
    i = ds.ids.index("2008_000002")
    np.testing.assert_array_equal(ds.load_raw(i)[1], data["voc_truth"]["2008_000002"]["sbd_label"])
    assert not ds.load_raw(i)[2].any()
    assert ds.load_raw(ds.ids.index("2007_000032"))[2].any()   # VOC's SegmentationObject still read


def test_real_datasets_have_no_shifted_domain(data):
    with pytest.raises(DatasetError, match="no 'shifted' domain"):
        build_dataset("cityscapes", data["root"] / "cityscapes", split="val", domain="shifted")


# --------------------------------------------------------------------------- profiles and stages


def test_profiles_hold_the_papers_settings():
    voc, cs = PROFILES["voc"], PROFILES["cityscapes"]
    assert (voc.dataset, voc.base, voc.backbone, voc.crop_size, voc.batch_size) == ("voc_aug", "pspnet", "resnet101",
                                                                                    336, 8)
    assert (voc.steps, voc.lr, voc.train_split, voc.finetune_steps, voc.finetune_lr, voc.finetune_split) == \
        (30000, 1e-3, "train_aug", 30000, 1e-4, "train")
    assert (voc.eval_crop_size, voc.eval_stride) == (480, 320)
    assert (cs.dataset, cs.backbone, cs.crop_size, cs.batch_size, cs.steps, cs.finetune_steps) == \
        ("cityscapes", "resnet101", 720, 8, 90000, 0)
    assert (cs.eval_crop_size, cs.eval_stride, cs.lr) == (720, 480, 1e-3)
    for p in (voc, cs):
        assert (p.momentum, p.weight_decay, p.poly_power, p.scale_range) == (0.9, 5e-4, 0.9, (0.5, 2.0))


@pytest.mark.slow
def test_real_profiles_need_weights_and_data_root(tmp_path, data):
    def aaf(*args):
        return subprocess.run([sys.executable, "-m", "aafcore.cli", *args], cwd=ROOT, capture_output=True,
                              text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)

    r = aaf("train", "--profile", "voc", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "--backbone-weights" in r.stderr and "resnet101" in r.stderr
    r = aaf("train", "--profile", "cityscapes", "--backbone-weights", str(data["weights"]), "--backbone", "resnet18",
            "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "data_root" in r.stderr
    r = aaf("train", "--profile", "voc", "--backbone-weights", str(tmp_path / "missing.pth"), "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "missing.pth" in r.stderr
    assert not (tmp_path / "x").exists()


def test_stage_schedule_and_fresh_momentum_at_the_second_stage(data):
    cfg = dataclasses.replace(_tiny("voc", data), steps=3, finetune_steps=2, method="baseline")
    trainer = Trainer(cfg, 21, "cpu")
    assert [trainer.base_lr(t) for t in range(5)] == [1e-3] * 3 + [1e-4] * 2
    assert [trainer.lr_factor(t) for t in (0, 3)] == [1.0, 1.0]
    assert trainer.lr_factor(4) == pytest.approx(0.5 ** 0.9)
    assert [trainer.decay(t) for t in (0, 3)] == [1.0, 1.0] and trainer.decay(2) == pytest.approx(10 ** (-2 / 3))
    g = torch.Generator().manual_seed(0)
    images, labels = torch.randn(2, 3, 40, 40, generator=g), torch.randint(0, 21, (2, 40, 40), generator=g)
    weight = next(p for p in trainer.model.parameters() if p.ndim == 4)

    def step_buffer(t):
        before = weight.detach().clone()
        trainer.step(images, labels, t)
        fresh = weight.grad + cfg.weight_decay * before   # what a new momentum buffer holds
        return trainer.optimizer.state[weight]["momentum_buffer"], fresh

    for t in range(3):
        buf, fresh = step_buffer(t)
    assert not torch.allclose(buf, fresh)          # within a stage momentum accumulates
    buf, fresh = step_buffer(3)
    torch.testing.assert_close(buf, fresh)         # the second stage starts afresh


def test_stage_sample_streams():
    assert _step_samples(5, 4, 10, 0) == _step_samples(5, 4, 10, 0, stage=0)
    assert _step_samples(5, 4, 10, 0, stage=1) != _step_samples(5, 4, 10, 0)


def test_config_hash_of_committed_runs_is_unchanged():
    """The fields added for the real-data profiles do not change older runs' hashes (or they retrain)."""
    runs = sorted((ROOT / "results").glob("*/synthetic/*/metrics.json"))
    assert runs
    for path in runs:
        result = json.loads(path.read_text())
        cfg = config_from_dict(result["config"])
        assert config_hash(cfg, result["provenance"].get("data")) == result["config_hash"], path


# --------------------------------------------------------------------------- end to end, one per dataset


def test_voc_profile_end_to_end(data, tmp_path):
    cfg = _tiny("voc", data, method="aaf")
    result = train(cfg, tmp_path / "run", data_root=data["root"] / "voc", progress=False)
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [0, 1, 2, 3]
    assert [r["lr"] for r in (log[0], log[2])] == [1e-3, 1e-4]      # stage 2 restarts at LR 1e-4
    assert log[2]["decay"] == 1.0
    assert result["evaluation"]["images"] == len(VOC_VAL)
    assert result["evaluation"]["inference"]["crop_size"] == 40     # sliding window of the profile
    assert result["class_names"][0] == "background" and len(result["metrics"]["iou"]) == 21
    assert result["config"]["pretrained"] == str(data["weights"])
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert ckpt["step"] == 4
    ev = evaluate_run(tmp_path / "run", "val", inference=InferenceConfig(PAPER_SCALES, True), progress=False)
    assert ev["evaluation"]["tag"] == "val-source-ms-w40" and ev["metrics"]["instance_miou"] is not None


def test_cityscapes_profile_end_to_end_and_table11_on_gta5(data, tmp_path):
    cfg = _tiny("cityscapes", data, method="affinity")
    result = train(cfg, tmp_path / "run", data_root=data["root"] / "cityscapes", progress=False)
    assert result["class_names"] == list(CITYSCAPES_CLASSES) and result["evaluation"]["images"] == 2
    ev = evaluate_run(tmp_path / "run", "part1", dataset="gta5", data_root=data["root"] / "gta5", progress=False)
    assert ev["evaluation"]["dataset"] == "gta5" and ev["evaluation"]["images"] == 3   # 02501 is not in Part 1
    assert (tmp_path / "run" / "eval" / "gta5-part1-source-w40" / "metrics.json").is_file()
    assert ev["metrics"]["instance_miou"] is None   # GTA5 has no instances
    with pytest.raises(ValueError, match="data_root"):
        evaluate_run(tmp_path / "run", "part1", dataset="gta5", progress=False)
    with pytest.raises(ValueError, match="cannot be evaluated there"):
        evaluate_run(tmp_path / "run", "val", dataset="voc", data_root=data["root"] / "voc", progress=False)


def test_plain_voc_trains_too(data, tmp_path):
    cfg = _tiny("voc", data, dataset="voc", train_split="train", finetune_split="train")
    result = train(cfg, tmp_path / "run", data_root=data["root"] / "voc", progress=False)
    assert result["evaluation"]["images"] == len(VOC_VAL) and len(result["metrics"]["iou"]) == 21


def test_gta5_trains_too(data, tmp_path):
    cfg = _tiny("cityscapes", data, dataset="gta5", train_split="all", val_split="part1")
    result = train(cfg, tmp_path / "run", data_root=data["root"] / "gta5", progress=False)
    assert result["evaluation"]["images"] == 3 and len(result["metrics"]["iou"]) == 19


# --------------------------------------------------------------------------- several processes


@pytest.mark.slow
def test_voc_profile_in_two_gloo_processes(data, tmp_path):
    """The voc profile's code path (two stages, weights file, SyncBatchNorm, sharded batches) under
    torchrun with 2 processes; rank 0 alone writes, and the log follows the global batch."""
    cfg = _tiny("voc", data, method="aaf")
    result = train_distributed(cfg, tmp_path / "run", 2, data_root=data["root"] / "voc", device="cpu", timeout=600)
    assert result["provenance"]["processes"] == 2
    assert result["config"] == json.loads(json.dumps(dataclasses.asdict(cfg)))
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [0, 1, 2, 3] and log[2]["lr"] == 1e-4
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".lock", "checkpoint.pt", "config.json",
                                                                     "metrics.json", "predictions", "train_log.jsonl"]
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert state["step"] == 4 and not any(k.startswith("module.") for k in state["model"])


def test_two_processes_need_a_divisible_batch(data, tmp_path):
    with pytest.raises(ValueError, match="divisible"):
        train_distributed(_tiny("voc", data, batch_size=3), tmp_path / "run", 2, data_root=data["root"] / "voc")
    assert not (tmp_path / "run").exists()


def test_torchrun_command_for_one_and_several_machines(tmp_path):
    one = torchrun_command(tmp_path / "c.json", tmp_path / "out", 4, data_root="/data")
    assert one[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "4"]
    assert one[one.index("--data-root") + 1] == "/data" and "aafcore.cli" in one
    several = torchrun_command(tmp_path / "c.json", tmp_path / "out", 4, standalone=False)
    assert "--standalone" not in several


def test_a_complete_tree_that_disagrees_with_the_shipped_train_aug_warns():
    from aafcore.datasets.voc import VOCAugDataset

    shipped = read_split_list(SPLITS_DIR / "voc_train_aug.txt")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        VOCAugDataset._warn_if_not_shipped(list(shipped))     # the same set: silent
        VOCAugDataset._warn_if_not_shipped(shipped[:5])       # a partial tree (a fixture): silent
    with pytest.warns(UserWarning, match="differs from the shipped 10582-id list"):
        VOCAugDataset._warn_if_not_shipped(shipped[:-1] + ["2099_000001"])


@pytest.mark.slow
def test_the_notebooks_run_the_cityscapes_protocol_on_two_processes_and_table11(data, tmp_path):
    """What the book tells a user with data and GPUs to run: ``papermill notebooks/train.ipynb ...
    -p profile cityscapes -p data_root ... -p backbone_weights ... -p gpus 2`` (torchrun; gloo here),
    then ``notebooks/evaluate.ipynb -p dataset gta5 -p split part1`` (fixture scale via overrides)."""
    import papermill

    small = {"backbone": "resnet18", "steps": 2, "batch_size": 2, "crop_size": 40, "eval_crop_size": 40,
             "eval_stride": 24, "checkpoint_every": 2, "log_every": 1, "num_workers": 0}
    results = tmp_path / "results"
    papermill.execute_notebook(
        str(ROOT / "notebooks" / "train.ipynb"), str(tmp_path / "train.ipynb"), kernel_name="python3",
        cwd=str(ROOT), progress_bar=False,
        parameters={"profile": "cityscapes", "method": "aaf", "data_root": str(data["root"] / "cityscapes"),
                    "backbone_weights": str(data["weights"]), "gpus": 2, "results_root": str(results),
                    "overrides": small})
    # the overrides give the run a folder of its own, beside the profile's pspnet-aaf-s0
    (run,) = (results / "cityscapes" / "cityscapes").glob("pspnet-aaf-s0-c*")
    trained = json.loads((run / "metrics.json").read_text())
    assert trained["overrides"]["steps"] == 2 and "pretrained" not in trained["overrides"]
    assert trained["provenance"]["processes"] == 2 and trained["config"]["crop_size"] == 40
    assert trained["config"]["eval_stride"] == 24 and trained["config"]["steps"] == 2
    papermill.execute_notebook(
        str(ROOT / "notebooks" / "evaluate.ipynb"), str(tmp_path / "evaluate.ipynb"), kernel_name="python3",
        cwd=str(ROOT), progress_bar=False,
        parameters={"run_dir": str(run), "dataset": "gta5", "split": "part1", "multiscale": True,
                    "data_root": str(data["root"] / "gta5")})
    ev = json.loads((run / "eval" / "gta5-part1-source-ms-w40" / "metrics.json").read_text())
    assert ev["evaluation"]["dataset"] == "gta5" and ev["evaluation"]["mode"] == "multi-scale+flip"
