"""Run folders on disk: atomic writes, locks, JSON, hashes, the "skip when finished" rule, provenance.

Everything a training run or an evaluation writes goes through here, so each rule has one copy:

* :func:`atomic_path` (and :func:`atomic_write_text`, :func:`atomic_save`, :func:`write_json`):
  write to a temporary file unique to the process next to the target, then ``os.replace`` it into
  place (a reader never sees half a file; two writers never share a temporary file);
* :func:`locked`: an OS lock on a folder (a run, an evaluation, a results tree); a second writer
  gets "... is in use by process P"; the lock of a killed process is released by the OS;
* :func:`read_json`: a JSON file, or a one-line ``ValueError`` naming the file;
* :func:`load_checkpoint`: a checkpoint of state dicts, tensors and plain types only
  (``weights_only=True``: a pickled object that would run code is refused);
* :func:`jsonable`: NaN and inf become ``null`` (strict JSON has no NaN);
* :func:`digest`, :func:`file_sha256`: hashes of JSON payloads (config and evaluation hashes) and files;
* :func:`finished_result`, :func:`same_training`: the skip rules; :func:`skip_message` says so
  (with the command-line advice only outside a notebook);
* :func:`provenance` (with :func:`environment`, :func:`git_commit`, :func:`device_name`,
  :func:`cpu_name`): where, with what and with which code a result was made;
* :func:`resolve_device`: ``"auto"``/``"cpu"``/``"cuda"`` to a ``torch.device``.

This module knows nothing of configs, datasets or models (layer 1 of DESIGN.md section 2); torch
is imported only by the functions that need it, so the report reads results without it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import pickle
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from aafcore import __version__
from aafcore.errors import one_line

if TYPE_CHECKING:
    import torch

try:
    import fcntl
except ImportError:   # pragma: no cover - Windows: no folder locks
    fcntl = None

__all__ = ["atomic_path", "atomic_write_text", "atomic_save", "load_checkpoint", "write_json", "read_json",
           "jsonable", "digest", "file_sha256", "finished_result", "same_training", "truncate_log", "locked",
           "FolderInUse", "check_writable_dir", "environment", "git_commit", "cpu_name", "device_name",
           "resolve_device", "provenance"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- writing and reading


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp"):
    """Yield a temporary path next to ``path`` (``.<name>.<random><suffix>``, unique to this call);
    when the block ends without an error it is renamed to ``path``, otherwise removed.

    ``suffix`` keeps a file type visible to writers that infer it (``.tmp.png`` for PIL)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o644)      # mkstemp makes 0600 files; results are meant to be read
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_save(obj, path: str | os.PathLike) -> None:
    """``torch.save(obj)`` to ``path`` through a temporary file and a rename."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """A checkpoint written by :func:`atomic_save` (a dict with a ``model`` state dict).

    It is read with ``torch.load(weights_only=True)``: only tensors, state dicts and plain Python
    types unpickle, so a file carrying an object that would run code when loaded is refused, like
    a truncated or garbage one, with a one-line ``ValueError`` naming the file.
    """
    import torch

    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, TypeError, AttributeError) as err:
        reason = one_line(err)
        reason = reason if len(reason) <= 200 else reason[:200] + " ..."
        raise ValueError(f"cannot load checkpoint {path}: not a plain aafcore checkpoint ({reason})") from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise ValueError(f"cannot load checkpoint {path}: no 'model' state dict in it")
    return state


def jsonable(obj):
    """``obj`` with every float ``nan``/``inf`` replaced by ``None`` (JSON ``null``; strict JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, obj) -> dict:
    """Write ``jsonable(obj)`` as strict JSON (one-space indent) atomically; returns what was written."""
    obj = jsonable(obj)
    atomic_write_text(path, json.dumps(obj, indent=1, allow_nan=False))
    return obj


def read_json(path: str | os.PathLike):
    """The content of a JSON file; a ``ValueError`` naming the file when it is unreadable or not JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"cannot read {path}: {one_line(err)}") from None


def truncate_log(path: str | os.PathLike, step: int) -> None:
    """Keep the records of a JSON-lines log whose ``step`` is ``< step`` (those before the checkpoint
    a run resumes from)."""
    path = Path(path)
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", -1) < step]
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def check_writable_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """``path`` when it is, or can be created as, a writable folder; a one-line ``ValueError`` otherwise
    (a file in the way, a read-only parent).  Nothing is created: this runs before any expensive work."""
    path = Path(path)
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"{what} {path}: {probe} is a file, not a folder; choose another path")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {path}: {probe} is not writable; choose another path (--out)")
    return path


# --------------------------------------------------------------------------- locks


class FolderInUse(ValueError):
    """Another process holds the lock of a folder (a one-line message naming it and the process)."""


def _lock_fd(lock_file: Path, what: str) -> int:
    """Open and lock ``lock_file`` (the calling process's pid is written into it); raise
    :class:`FolderInUse` with the owner's pid when another process holds it."""
    while True:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            owner = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise FolderInUse(f"{what} {lock_file.parent} is in use by process {owner}; wait for it to finish "
                              f"(or stop it) and run again") from None
        try:   # the previous holder may have removed the file between our open and our lock
            same = os.path.samestat(os.fstat(fd), os.stat(lock_file))
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)
        lock_file.parent.mkdir(parents=True, exist_ok=True)


STALE_TEMPORARIES = (".*.tmp", ".*.tmp.png", "predictions/.*.tmp.png")   # :func:`atomic_path`'s, in a locked folder


@contextlib.contextmanager
def locked(folder: str | os.PathLike, what: str = "run"):
    """Hold an exclusive OS lock (``fcntl.flock``) on ``folder/.lock`` for the block.

    The folder (and its missing parents) is created when missing; if it was created here and holds
    nothing but the lock when the block ends, it is removed again with the parents created here (a
    failed command leaves no empty folders).  A second
    process gets :class:`FolderInUse` ("run D is in use by process P") at once.  A killed process's
    lock is released by the OS, so there are no stale locks; the temporary files such a process
    left (:data:`STALE_TEMPORARIES`) are removed once the lock is held, since no one else writes there.  (The ``filelock`` package truncates
    the lock file when it tries to lock, so it cannot tell who holds it; hence ``fcntl`` here.)
    """
    folder = Path(folder)
    top = folder   # the outermost folder created here (removed again if left empty)
    while not top.parent.exists() and top.parent != top:
        top = top.parent
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot create {what} folder {folder}: {one_line(err.strerror or err)}") from None
    if fcntl is None:   # pragma: no cover
        yield folder
        return
    lock_file = folder / ".lock"
    try:
        fd = _lock_fd(lock_file, what)
    except PermissionError as err:
        raise ValueError(f"cannot lock {what} folder {folder}: {one_line(err.strerror or err)}") from None
    try:
        for pattern in STALE_TEMPORARIES:
            for stale in folder.glob(pattern):
                stale.unlink(missing_ok=True)
        yield folder
    finally:
        if created and [p.name for p in folder.iterdir()] == [".lock"]:
            lock_file.unlink(missing_ok=True)
            with contextlib.suppress(OSError):   # a folder another process has since written into stays
                for empty in [folder, *folder.parents]:
                    empty.rmdir()
                    if empty == top:
                        break
        os.close(fd)


# --------------------------------------------------------------------------- hashes and the skip rule


def digest(payload) -> str:
    """sha256 of ``payload`` as sorted-key JSON (tuples as lists), first 16 hex digits."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=list).encode()).hexdigest()[:16]


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes (hex, 64 digits): which checkpoint a result was computed with."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def same_training(evaluation: dict, run: dict) -> bool:
    """Whether an evaluation's ``metrics.json`` was computed from the training that ``run`` (the run's
    own ``metrics.json``) records: same ``config_hash``, same training start and, when both record
    it, the same ``checkpoint_sha256``.  An evaluation of an earlier training of the folder is stale."""
    if not isinstance(evaluation, dict) or not isinstance(run, dict):
        return False
    trained = (evaluation.get("provenance") or {}).get("training") or {}
    if evaluation.get("config_hash") != run.get("config_hash"):
        return False
    if trained.get("started") != (run.get("provenance") or {}).get("started"):
        return False
    used, current = (evaluation.get("evaluation") or {}).get("checkpoint_sha256"), run.get("checkpoint_sha256")
    return used is None or current is None or used == current


def finished_result(path: str | os.PathLike, key: str, expected: str) -> dict | None:
    """The result at ``path`` when it exists and records ``expected`` under ``key`` (the run or
    evaluation is finished and matches: skip it); ``None`` otherwise."""
    path = Path(path)
    if not path.is_file():
        return None
    previous = read_json(path)
    return previous if isinstance(previous, dict) and previous.get(key) == expected else None


def in_notebook() -> bool:
    """Whether this code runs in a Jupyter kernel (a notebook, papermill) rather than a terminal."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return shell is not None and getattr(shell, "kernel", None) is not None


def skip_message(path: str | os.PathLike, result: dict, what: str = "run") -> str:
    """The line printed when a finished ``what`` ("run" or "evaluation") at ``path`` is not redone.

    In a terminal it says how to redo it (``--force``); in a notebook, whose reader has no command
    line, it says that what follows are the stored results and when they were made (``result``:
    the ``metrics.json`` content; its ``provenance.started``), in two short lines."""
    if not in_notebook():
        return (f"{path}: finished run with the same config, skipped (use --force to retrain)" if what == "run"
                else f"{path}: finished evaluation with the same settings, skipped (use --force)")
    prov = result.get("provenance") or {}
    when = f" on {str(prov['started'])[:10]}" if prov.get("started") else ""
    where = f" ({prov['device']})" if prov.get("device") else ""
    made = "trained" if what == "run" else "run"
    folder = Path(path).parent.name if Path(path).name == "metrics.json" else Path(path).name
    return f"This {what} ({folder}) was {made}{when}{where} with these settings;\nthe results below are its stored ones."


# --------------------------------------------------------------------------- provenance


def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo``), or ``platform.processor()``."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment() -> dict:
    """Versions and devices of this machine: the provenance fields of a result."""
    import torch
    import torchvision

    info = {"aafcore": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "cpu_threads": torch.get_num_threads(),
            # the SIMD kernels torch dispatches to (AVX2, AVX512, ...): CPU results are bit-identical
            # only for the same thread count *and* the same kernels
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            # "highest" (full float32) unless a user lowered it (TF32 / bfloat16 matmuls on a GPU)
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cuda": torch.cuda.is_available()}
    if info["cuda"]:
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def git_commit() -> str | None:
    """The commit of the working tree (``+dirty`` when it has changes), or None outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty else "")


def resolve_device(device: str = "auto", local_rank: int = 0) -> torch.device:
    """``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``: the ``torch.device`` to run on
    (``cuda:<local_rank>`` on a GPU, one per process under torchrun).  ``"cuda"`` on a machine
    without a usable GPU is a one-line ``ValueError``."""
    import torch

    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise ValueError(f"unknown device {device!r}; choose auto, cpu or cuda")
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        build = "built without CUDA" if torch.version.cuda is None else f"CUDA {torch.version.cuda}, no usable GPU"
        raise ValueError(f"--device {device}: CUDA is not available here (torch {torch.__version__}, {build}); "
                         f"use --device cpu or auto")
    return torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")


def device_name(device: torch.device) -> str:
    """``"cpu"`` or the GPU's name, as results record it."""
    import torch

    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def provenance(device: torch.device) -> dict:
    """The provenance block every result starts with: ``git_commit``, ``packages``
    (:func:`environment`) and ``device`` (:func:`device_name`)."""
    return {"git_commit": git_commit(), "packages": environment(), "device": device_name(device)}
