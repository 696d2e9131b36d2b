"""A checkpoint cannot run code: every checkpoint loads with ``weights_only=True`` (issue 13, case 1)."""

from __future__ import annotations

import pathlib
import shutil

import pytest
import torch

from aafcore.cli import main
from aafcore.config import profile_config
from aafcore.runs import load_checkpoint
from aafcore.train import train


class _Touch:
    """Unpickling this object would create ``marker`` (what a malicious checkpoint could do)."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


@pytest.fixture(scope="module")
def finished_run(smoke_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "pspnet-baseline-s0"
    train(profile_config("smoke"), out, data_root=smoke_data, progress=False)
    return out


def test_a_genuine_checkpoint_loads(finished_run):
    state = load_checkpoint(finished_run / "checkpoint.pt")
    assert state["step"] == 8 and isinstance(state["model"], dict) and state["config"]["method"] == "baseline"


def test_a_checkpoint_carrying_code_is_refused_in_one_line(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "checkpoint.pt"
    torch.save({"step": 8, "model": {}, "payload": _Touch(marker)}, path)
    with pytest.raises(ValueError, match="cannot load checkpoint .*checkpoint.pt") as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value) and not marker.exists()


@pytest.mark.parametrize("content", [b"", b"garbage, not a checkpoint", b"PK\x03\x04 truncated zip"])
def test_a_corrupt_checkpoint_is_refused_in_one_line(tmp_path, content):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="cannot load checkpoint") as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value)


def test_aaf_evaluate_and_resume_refuse_a_malicious_checkpoint(finished_run, smoke_data, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    marker = tmp_path / "pwned"
    state = load_checkpoint(run / "checkpoint.pt")
    state["payload"] = _Touch(marker)
    torch.save(state, run / "checkpoint.pt")
    capsys.readouterr()
    assert main(["evaluate", str(run), "--split", "test", "--no-progress", "--data-root", str(smoke_data)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("aaf: error: cannot load checkpoint") and not marker.exists()
    (run / "metrics.json").unlink()   # an unfinished run: aaf train continues from its checkpoint
    assert main(["train", "--profile", "smoke", "--out", str(run), "--resume", "--no-progress",
                 "--data-root", str(smoke_data)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot load checkpoint" in err[0] and not marker.exists()
