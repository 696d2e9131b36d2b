"""Issue 13, case 3: one writer per run folder, evaluation folder and results tree; temporary files
unique per process; a kill (even during a checkpoint write) loses nothing.

The fault-injection tests start real processes: a second ``aaf train`` while one runs, a process
killed while it holds a lock, one killed with SIGKILL in the middle of writing its checkpoint.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from aafcore.cli import main
from aafcore.config import profile_config
from aafcore.evaluate import evaluate_run
from aafcore.reproduce import reproduce
from aafcore.runs import FolderInUse, atomic_write_text, locked
from aafcore.train import train

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _hold(folder: Path, what: str = "run") -> subprocess.Popen:
    """A process that holds ``folder``'s lock until killed."""
    code = (f"import time\nfrom aafcore.runs import locked\nwith locked({str(folder)!r}, {what!r}):\n"
            f"    print('held', flush=True)\n    time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=ENV, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def _kill(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()
    proc.stdout.close()


def test_a_locked_folder_names_its_owner_and_a_killed_owner_releases_it(tmp_path):
    folder = tmp_path / "run"
    owner = _hold(folder)
    try:
        with pytest.raises(FolderInUse, match=f"run {folder} is in use by process {owner.pid}"):
            with locked(folder):
                pass
    finally:
        _kill(owner)   # SIGKILL: no clean-up ran, the OS released the lock
    with locked(folder) as held:
        assert held == folder and (folder / ".lock").read_text().strip() == str(os.getpid())


def test_a_failed_command_leaves_no_empty_folder(tmp_path):
    with pytest.raises(RuntimeError):
        with locked(tmp_path / "a" / "b" / "run"):
            raise RuntimeError("failed before writing anything")
    assert not (tmp_path / "a").exists()
    with locked(tmp_path / "kept"):
        (tmp_path / "kept" / "result.json").write_text("{}")
    assert (tmp_path / "kept" / "result.json").exists()


@pytest.mark.slow
def test_a_second_aaf_train_into_a_running_run_is_refused(smoke_data, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--profile", "smoke", "--steps", "150", "--checkpoint-every", "5", "--out", str(out),
            "--data-root", str(smoke_data), "--no-progress"]
    first = subprocess.Popen([sys.executable, "-m", "aafcore.cli", *args], cwd=ROOT, env=ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (out / "checkpoint.pt").exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert first.poll() is None, "the first run ended before the second started"
        capsys.readouterr()
        for second in (args, [*args, "--method", "aaf"], [*args, "--force"]):   # same config, another, --force
            assert main(second) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and f"run {out} is in use by process {first.pid}" in err[0], err
        _, stderr = first.communicate(timeout=300)
    finally:
        first.kill()
    assert first.returncode == 0, stderr
    log = (out / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in log] == list(range(150))     # the survivor's log is whole
    assert json.loads((out / "metrics.json").read_text())["config"]["method"] == "baseline"


def test_aaf_evaluate_and_aaf_reproduce_refuse_a_folder_in_use(smoke_data, tmp_path, capsys):
    run = tmp_path / "run"
    train(profile_config("smoke"), run, data_root=smoke_data, progress=False)
    owner = _hold(run / "eval" / "test-source", "evaluation")
    try:
        with pytest.raises(FolderInUse, match=f"evaluation .*test-source is in use by process {owner.pid}"):
            evaluate_run(run, "test", data_root=smoke_data, progress=False)
    finally:
        _kill(owner)
    assert evaluate_run(run, "test", data_root=smoke_data, progress=False)["evaluation"]["split"] == "test"
    results = tmp_path / "results"
    owner = _hold(results, "results tree")
    try:
        with pytest.raises(FolderInUse, match=f"results tree {results} is in use by process {owner.pid}"):
            reproduce("smoke", results_root=results, book=False)
        capsys.readouterr()
        assert main(["reproduce", "--profile", "smoke", "--results", str(results), "--no-book"]) == 2
        assert "is in use by process" in capsys.readouterr().err
    finally:
        _kill(owner)
    assert not list(results.rglob("*.ipynb"))   # nothing ran


def _write_many(path: str, tag: str, n: int) -> None:
    for i in range(n):
        atomic_write_text(path, json.dumps({"writer": tag, "i": i}))


def test_two_processes_writing_one_file_never_share_a_temporary_file(tmp_path):
    target = tmp_path / "metrics.json"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_write_many, args=(str(target), tag, 300)) for tag in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]      # with one shared "<name>.tmp" a writer dies
    assert json.loads(target.read_text())["i"] == 299
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


_KILL_IN_SAVE = """
import os, signal, sys
import torch
real_save, calls = torch.save, []

def save(obj, f, *args, **kwargs):   # the second checkpoint: half written, then SIGKILL
    calls.append(f)
    real_save(obj, f, *args, **kwargs)
    if len(calls) == 2:
        data = open(f, "rb").read()
        open(f, "wb").write(data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)

torch.save = save
from aafcore.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_sigkill_during_a_checkpoint_write_then_resume_is_bit_identical(smoke_data, tmp_path):
    args = ["train", "--profile", "smoke", "--method", "aaf", "--steps", "20", "--checkpoint-every", "5",
            "--data-root", str(smoke_data), "--no-progress"]
    killed = tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-c", _KILL_IN_SAVE, *args, "--out", str(killed)], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert torch.load(killed / "checkpoint.pt", weights_only=True)["step"] == 5    # the last whole one
    assert list(killed.glob(".checkpoint.pt.*.tmp"))                             # the half-written file
    for out in (killed, tmp_path / "whole"):
        r = subprocess.run([sys.executable, "-m", "aafcore.cli", *args, "--out", str(out)], cwd=ROOT, env=ENV,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
    assert not list(killed.glob(".*.tmp"))                                      # cleaned under the lock
    a = torch.load(killed / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)
    for part in ("model", "aux"):
        assert a[part].keys() == b[part].keys() and all(torch.equal(a[part][k], b[part][k]) for k in a[part])
    m1, m2 = (json.loads((d / "metrics.json").read_text()) for d in (killed, tmp_path / "whole"))
    assert m1["metrics"] == m2["metrics"] and m1["provenance"]["resumed_from_step"] == 5
    assert (killed / "train_log.jsonl").read_text() == (tmp_path / "whole" / "train_log.jsonl").read_text()
