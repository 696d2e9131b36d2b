"""Issue 13, cases 2 and 6: a run is identified by its configuration, and progress is never lost.

* a config with overrides gets a folder of its own; a finished run is never replaced by another
  configuration without ``--force``; evaluations are tied to the training (and checkpoint) they
  evaluated, and the report ignores stale ones;
* an unfinished run continues by default; a killed ``--force`` retrain is recognisably
  unfinished; ``--resume`` without a checkpoint says so; a resume with another thread count warns.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch

from aafcore import report
from aafcore.cli import main
from aafcore.config import PROFILES, overrides, profile_config, run_dir, run_name
from aafcore.evaluate import evaluate_run
from aafcore.runs import file_sha256, load_checkpoint, same_training
from aafcore.safety import ReproducibilityWarning
from aafcore.train import train


def _tree(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (lock files aside): what "untouched" means."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def finished(smoke_data, tmp_path_factory) -> Path:
    """A finished smoke run (baseline, seed 0) at its profile's place under ``<root>/results``."""
    root = tmp_path_factory.mktemp("identity")
    out = run_dir(profile_config("smoke"), root / "results")
    train(profile_config("smoke"), out, data_root=smoke_data, progress=False)
    return out


def _copy(finished: Path, tmp_path: Path) -> Path:
    out = tmp_path / "results" / "smoke" / "synthetic" / finished.name
    shutil.copytree(finished, out)
    return out


# --------------------------------------------------------------------------- case 2: run identity


def test_a_run_with_overrides_gets_a_folder_of_its_own():
    base = profile_config("cpu")
    assert overrides(base) == {} and run_dir(base).name == "pspnet-baseline-s0"
    short = profile_config("cpu", steps=2)
    assert overrides(short) == {"steps": 2}
    assert run_dir(short).parent == run_dir(base).parent
    assert run_dir(short).name.startswith("pspnet-baseline-s0-c") and run_dir(short) != run_dir(base)
    assert run_dir(profile_config("cpu", steps=2)) == run_dir(short)            # stable
    assert run_dir(profile_config("cpu", steps=3)) != run_dir(short)
    assert run_dir(profile_config("cpu", lr=1000.0, steps=4)) != run_dir(base)  # the papermill case
    # the fields in the name are not overrides: every run of the reproduction keeps its folder
    for method in ("baseline", "affinity", "aaf", "emb", "gan"):
        for seed in (0, 1, 2):
            cfg = profile_config("cpu", base="fcn", method=method, seed=seed)
            assert overrides(cfg) == {} and run_dir(cfg).name == run_name(cfg)
    aaf = profile_config("cpu", method="aaf", kernel_sizes=(3, 5))
    assert overrides(aaf) == {} and run_dir(aaf).name == "pspnet-aaf-k3_5-s0"
    # kernel sizes are not in a baseline's name, so there they are an override
    assert overrides(profile_config("cpu", kernel_sizes=(3, 5))) == {"kernel_sizes": (3, 5)}
    # the ImageNet weights the real-data profiles require are not an override
    voc = profile_config("voc", method="aaf", pretrained="/weights/resnet101.pth")
    assert overrides(voc) == {} and run_dir(voc).name == "pspnet-aaf-s0"
    assert set(PROFILES) >= {"smoke", "cpu", "gpu", "voc", "cityscapes"}


def test_aaf_train_with_an_override_leaves_the_finished_run_untouched(finished, smoke_data, tmp_path, monkeypatch,
                                                                      capsys):
    out = _copy(finished, tmp_path)
    before = _tree(out)
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--profile", "smoke", "--steps", "2", "--data-root", str(smoke_data), "--no-progress"]) == 0
    assert _tree(out) == before
    (other,) = [p for p in out.parent.iterdir() if p != out]
    assert other.name.startswith("pspnet-baseline-s0-c")
    result = json.loads((other / "metrics.json").read_text())
    assert result["overrides"] == {"steps": 2} and result["config"]["steps"] == 2
    # the report reads the profile's runs only: one baseline row, the untouched one
    rows = report.load_results("smoke", "synthetic", tmp_path / "results")
    assert list(rows["run"]) == [out.name]


def test_a_finished_run_of_another_config_is_refused_without_force(finished, smoke_data, tmp_path, capsys):
    out = _copy(finished, tmp_path)
    before = _tree(out)
    args = ["train", "--profile", "smoke", "--method", "aaf", "--out", str(out), "--data-root", str(smoke_data),
            "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another configuration" in err[0] and "--force" in err[0], err
    assert _tree(out) == before
    # an override into the finished run's folder (--out): refused as well
    assert main(["train", "--profile", "smoke", "--steps", "2", "--out", str(out), "--data-root", str(smoke_data),
                 "--no-progress"]) == 2
    assert _tree(out) == before
    assert main([*args, "--force"]) == 0
    assert json.loads((out / "metrics.json").read_text())["config"]["method"] == "aaf"


def test_evaluations_are_tied_to_their_training(finished, smoke_data, tmp_path):
    out = _copy(finished, tmp_path)
    trained = json.loads((out / "metrics.json").read_text())
    assert trained["checkpoint_sha256"] == file_sha256(out / "checkpoint.pt")
    first = evaluate_run(out, "test", data_root=smoke_data, progress=False)
    assert first["evaluation"]["checkpoint_sha256"] == trained["checkpoint_sha256"]
    assert same_training(first, trained)
    # a retrain of the folder (another training, another checkpoint): the evaluation is stale
    retrained = train(profile_config("smoke"), out, data_root=smoke_data, progress=False, force=True)
    assert not same_training(first, retrained)
    with pytest.warns(UserWarning, match="earlier training"):
        rows = report.load_results("smoke", "synthetic", tmp_path / "results")
    assert "test-source" not in set(rows["tag"])
    second = evaluate_run(out, "test", data_root=smoke_data, progress=False)   # not skipped: evaluated again
    assert second["provenance"]["training"]["started"] == retrained["provenance"]["started"]
    assert same_training(second, retrained)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows = report.load_results("smoke", "synthetic", tmp_path / "results")
    assert "test-source" in set(rows["tag"])


def test_aaf_evaluate_refuses_a_checkpoint_of_another_run(finished, smoke_data, tmp_path, capsys):
    out = _copy(finished, tmp_path)
    aaf = tmp_path / "aaf"
    train(profile_config("smoke", method="aaf"), aaf, data_root=smoke_data, progress=False)
    shutil.copy(aaf / "checkpoint.pt", out / "checkpoint.pt")   # an AAF checkpoint in a baseline folder
    assert main(["evaluate", str(out), "--split", "test", "--data-root", str(smoke_data), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another configuration" in err[0] and "method aaf" in err[0], err
    assert not (out / "eval").exists()
    # the same config, but not the checkpoint the metrics were computed with (another seed's weights)
    state = load_checkpoint(finished / "checkpoint.pt")
    state["model"] = {k: v + 1 if v.is_floating_point() else v for k, v in state["model"].items()}
    torch.save(state, out / "checkpoint.pt")
    assert main(["evaluate", str(out), "--split", "test", "--data-root", str(smoke_data), "--no-progress"]) == 2
    assert "sha256" in capsys.readouterr().err


# --------------------------------------------------------------------------- case 6: progress


def test_an_unfinished_run_continues_by_default(smoke_data, tmp_path):
    cfg = profile_config("smoke", steps=6, checkpoint_every=2)
    out = tmp_path / "run"
    assert train(cfg, out, data_root=smoke_data, progress=False, stop_after=3) == {}
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 2
    with pytest.raises(ValueError, match="unfinished run.*--force"):
        train(cfg, out, data_root=smoke_data, progress=False, resume=False)
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 2      # not discarded
    result = train(cfg, out, data_root=smoke_data, progress=False)   # no resume flag: continues
    assert result["provenance"]["resumed_from_step"] == 2
    steps = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert steps == list(range(6))


def test_a_killed_force_retrain_is_recognisably_unfinished(finished, smoke_data, tmp_path, capsys):
    out = _copy(finished, tmp_path)
    cfg = profile_config("smoke")
    # a --force retrain stopped after 5 steps, as a kill would stop it: its checkpoint is step 4's
    assert train(cfg, out, data_root=smoke_data, progress=False, force=True, stop_after=5) == {}
    assert not (out / "metrics.json").exists()                      # the old metrics are gone
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 4
    assert main(["evaluate", str(out), "--data-root", str(smoke_data), "--no-progress"]) == 2
    assert "not a finished training run" in capsys.readouterr().err
    result = train(cfg, out, data_root=smoke_data, progress=False)   # continues the retrain
    assert result["provenance"]["resumed_from_step"] == 4
    assert len((out / "train_log.jsonl").read_text().splitlines()) == cfg.steps


def test_resume_without_a_checkpoint_says_so(smoke_data, tmp_path, capsys):
    out = tmp_path / "fresh"
    assert main(["train", "--profile", "smoke", "--steps", "2", "--out", str(out), "--resume",
                 "--data-root", str(smoke_data), "--no-progress"]) == 0
    assert "no checkpoint to resume from; starting at step 0" in capsys.readouterr().err


def test_a_resume_with_another_thread_count_warns(smoke_data, tmp_path):
    cfg = profile_config("smoke", steps=4, checkpoint_every=2)
    out = tmp_path / "run"
    threads = torch.get_num_threads()
    train(cfg, out, data_root=smoke_data, progress=False, stop_after=2)
    assert load_checkpoint(out / "checkpoint.pt")["numerics"]["cpu_threads"] == threads
    other = 1 if threads != 1 else 2
    torch.set_num_threads(other)
    try:
        with pytest.warns(ReproducibilityWarning, match=f"cpu_threads {threads} -> {other}"):
            result = train(cfg, out, data_root=smoke_data, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert result["provenance"]["packages"]["cpu_threads"] == other
    assert result["provenance"]["packages"]["float32_matmul_precision"] == torch.get_float32_matmul_precision()
    # the same numerics: no warning
    train(cfg, tmp_path / "same", data_root=smoke_data, progress=False, stop_after=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReproducibilityWarning)
        train(cfg, tmp_path / "same", data_root=smoke_data, progress=False)
