"""Issue 13, cases 5 and 9: every anticipated failure of the CLI is one line and exit 2.

``aaf: error: <what, which file, what to do>``; Ctrl-C is one line and exit 130 after a
consistent checkpoint; ``--debug`` (or ``AAF_DEBUG=1``) shows the traceback.  Output paths are
checked before any work.  Odd but legal input (a crop of 1 pixel, another profile's data, 10^20
steps) is refused or warned about.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from aafcore.cli import main
from checks import blank_labels
from aafcore.config import profile_config
from aafcore.runs import check_writable_dir
from aafcore.train import train

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _one_line(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("aaf: error: "), err
    for needle in needles:
        assert needle in err[0], err[0]
    return err[0]


@pytest.fixture
def no_data(tmp_path, monkeypatch) -> Path:
    """Where ``aaf train`` would generate its data: it must stay absent when a command fails early."""
    monkeypatch.setenv("AAF_DATA", str(tmp_path / "data"))
    return tmp_path / "data"


@pytest.fixture(scope="module")
def finished(smoke_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("errors") / "run"
    train(profile_config("smoke"), out, data_root=smoke_data, progress=False)
    return out


# --------------------------------------------------------------------------- output paths, before any work


def test_unusable_output_folders_are_refused_before_any_work(tmp_path, no_data, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for out, needle in ((a_file, "is a file"), (a_file / "run", "is a file")):
        assert main(["train", "--profile", "smoke", "--out", str(out), "--no-progress"]) == 2
        _one_line(capsys, str(out), needle)
    assert main(["data", "synthetic", "--profile", "smoke", "--out", str(a_file / "d"), "--no-progress"]) == 2
    _one_line(capsys, "is a file")
    assert not no_data.exists()          # no data was generated, no model built


def test_a_read_only_output_folder_is_refused(tmp_path, no_data, capsys, monkeypatch):
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == tmp_path else real(path, mode))
    with pytest.raises(ValueError, match="is not writable"):
        check_writable_dir(tmp_path / "run")
    assert main(["train", "--profile", "smoke", "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    _one_line(capsys, "not writable")
    assert main(["data", "synthetic", "--profile", "smoke", "--out", str(tmp_path / "d"), "--no-progress"]) == 2
    _one_line(capsys, "not writable")
    assert not no_data.exists() and not (tmp_path / "run").exists()


def test_cuda_without_a_gpu_is_one_line(tmp_path, no_data, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["train", "--profile", "smoke", "--device", "cuda", "--out", str(tmp_path / "run")]) == 2
    _one_line(capsys, "CUDA is not available", "--device cpu")
    assert not no_data.exists()


# --------------------------------------------------------------------------- corrupt inputs


def test_a_garbage_checkpoint_in_an_unfinished_run_is_one_line(finished, smoke_data, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    (run / "metrics.json").unlink()
    (run / "checkpoint.pt").write_bytes((finished / "checkpoint.pt").read_bytes()[:500])   # truncated
    assert main(["train", "--profile", "smoke", "--out", str(run), "--data-root", str(smoke_data),
                 "--no-progress"]) == 2
    _one_line(capsys, "cannot load checkpoint", str(run / "checkpoint.pt"))


def test_a_metrics_json_that_is_not_a_result_is_one_line(finished, smoke_data, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    for content, needle in (("[1, 2]", "not a training result"), ('{"config": {"steps": 8, "base', "cannot read")):
        (run / "metrics.json").write_text(content)
        assert main(["train", "--profile", "smoke", "--out", str(run), "--data-root", str(smoke_data),
                     "--no-progress"]) == 2
        _one_line(capsys, needle, str(run / "metrics.json"))
        assert main(["evaluate", str(run), "--data-root", str(smoke_data), "--no-progress"]) == 2
        _one_line(capsys, str(run / "metrics.json"))
        assert (run / "metrics.json").read_text() == content      # left as it was


def test_a_truncated_config_file_names_the_file(tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text('{"profile": "smoke", "method": "aa')
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    _one_line(capsys, str(config), "Unterminated string")


def test_a_val_split_without_labelled_pixels_is_one_line_and_writes_no_result(smoke_data, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(smoke_data, data)
    blank_labels(data, "val_")
    args = ["train", "--profile", "smoke", "--out", str(tmp_path / "run"), "--data-root", str(data), "--no-progress"]
    for _ in range(2):   # the rerun continues from the final checkpoint and says the same
        assert main(args) == 2
        _one_line(capsys, "val split", "no labelled pixel")
        assert not (tmp_path / "run" / "metrics.json").exists()


# --------------------------------------------------------------------------- --debug, Ctrl-C


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        main(["--debug", "train", "--profile", "smoke", "--out", str(a_file)])
    monkeypatch.setenv("AAF_DEBUG", "1")
    with pytest.raises(ValueError, match="is a file"):
        main(["train", "--profile", "smoke", "--out", str(a_file)])


@pytest.mark.slow
def test_ctrl_c_stops_after_a_consistent_checkpoint_with_exit_130(smoke_data, tmp_path):
    args = ["train", "--profile", "smoke", "--method", "gan", "--steps", "150", "--checkpoint-every", "1000",
            "--data-root", str(smoke_data), "--no-progress"]
    out = tmp_path / "interrupted"
    proc = subprocess.Popen([sys.executable, "-m", "aafcore.cli", *args, "--out", str(out)], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = out / "train_log.jsonl"
    deadline = time.time() + 120
    while (not log.exists() or log.stat().st_size == 0) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aaf: interrupted"), stderr
    step = torch.load(out / "checkpoint.pt", weights_only=True)["step"]       # written at the interruption
    assert 0 < step < 150 and not (out / "metrics.json").exists()
    assert len(log.read_text().splitlines()) >= step
    for folder in (out, tmp_path / "whole"):
        r = subprocess.run([sys.executable, "-m", "aafcore.cli", *args, "--out", str(folder)], cwd=ROOT, env=ENV,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (out, tmp_path / "whole"))
    assert a["provenance"]["resumed_from_step"] == step and a["metrics"] == b["metrics"]
    assert (out / "train_log.jsonl").read_text() == (tmp_path / "whole" / "train_log.jsonl").read_text()


# --------------------------------------------------------------------------- case 9: odd but legal input


@pytest.mark.parametrize("args, needle", [
    (["--crop-size", "1"], "crop_size 1 is under 16"),
    (["--steps", "100000000000000000000"], "steps + finetune_steps"),
    (["--steps", "1e20"], "invalid int value"),
])
def test_nonsense_sizes_are_refused(args, needle, tmp_path, no_data, capsys):
    try:
        status = main(["train", "--profile", "smoke", *args, "--out", str(tmp_path / "run")])
    except SystemExit as exit_:   # argparse's own errors (also "aaf: error: ...", exit 2)
        status = exit_.code
    assert status == 2
    _one_line(capsys, needle)
    assert not no_data.exists()


def test_another_profiles_data_is_warned_about_in_one_line(smoke_data, tmp_path, capsys):
    assert main(["train", "--profile", "cpu", "--steps", "1", "--batch-size", "2", "--crop-size", "32",
                 "--out", str(tmp_path / "run"), "--data-root", str(smoke_data), "--no-progress"]) == 0
    warning = [line for line in capsys.readouterr().err.splitlines() if line.startswith("aaf: warning:")]
    assert len(warning) == 1 and "'smoke' synthetic benchmark, not the 'cpu' profile's" in warning[0], warning
