"""Run folders on disk: atomic writes, JSON, hashes, the "skip when finished" rule, provenance.

Everything a training run or an evaluation writes goes through here, so each rule has one copy:

* :func:`atomic_write_text`, :func:`atomic_save`, :func:`write_json`: write to ``<name>.tmp`` next
  to the target, then ``os.replace`` it into place (a reader never sees half a file);
* :func:`read_json`: a JSON file, or a one-line ``ValueError`` naming the file;
* :func:`load_checkpoint`: a checkpoint of state dicts, tensors and plain types only
  (``weights_only=True``: a pickled object that would run code is refused);
* :func:`jsonable`: NaN and inf become ``null`` (strict JSON has no NaN);
* :func:`digest`: the 16-hex-digit sha256 of a JSON payload (config and evaluation hashes);
* :func:`finished_result`: the skip rule: a result whose recorded hash matches is finished;
* :func:`provenance` (with :func:`environment`, :func:`git_commit`, :func:`device_name`,
  :func:`cpu_name`): where, with what and with which code a result was made;
* :func:`resolve_device`: ``"auto"``/``"cpu"``/``"cuda"`` to a ``torch.device``.

This module knows nothing of configs, datasets or models (layer 1 of DESIGN.md section 2).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import platform
import subprocess
from pathlib import Path

import torch

from aafcore import __version__
from aafcore.errors import one_line

__all__ = ["atomic_write_text", "atomic_save", "load_checkpoint", "write_json", "read_json", "jsonable", "digest",
           "finished_result", "truncate_log", "environment", "git_commit", "cpu_name", "device_name", "resolve_device",
           "provenance"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- writing and reading


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through ``<path>.tmp`` and a rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def atomic_save(obj, path: str | os.PathLike) -> None:
    """``torch.save(obj)`` to ``path`` through ``<path>.tmp`` and a rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """A checkpoint written by :func:`atomic_save` (a dict with a ``model`` state dict).

    It is read with ``torch.load(weights_only=True)``: only tensors, state dicts and plain Python
    types unpickle, so a file carrying an object that would run code when loaded is refused, like
    a truncated or garbage one, with a one-line ``ValueError`` naming the file.
    """
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


# --------------------------------------------------------------------------- hashes and the skip rule


def digest(payload) -> str:
    """sha256 of ``payload`` as sorted-key JSON (tuples as lists), first 16 hex digits."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=list).encode()).hexdigest()[:16]


def finished_result(path: str | os.PathLike, key: str, expected: str) -> dict | None:
    """The result at ``path`` when it exists and records ``expected`` under ``key`` (the run or
    evaluation is finished and matches: skip it); ``None`` otherwise."""
    path = Path(path)
    if not path.is_file():
        return None
    previous = read_json(path)
    return previous if isinstance(previous, dict) and previous.get(key) == expected else None


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
    import torchvision

    info = {"aafcore": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "cpu_threads": torch.get_num_threads(),
            # the SIMD kernels torch dispatches to (AVX2, AVX512, ...): CPU results are bit-identical
            # only for the same thread count *and* the same kernels
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
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
    (``cuda:<local_rank>`` on a GPU, one per process under torchrun)."""
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    return torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")


def device_name(device: torch.device) -> str:
    """``"cpu"`` or the GPU's name, as results record it."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def provenance(device: torch.device) -> dict:
    """The provenance block every result starts with: ``git_commit``, ``packages``
    (:func:`environment`) and ``device`` (:func:`device_name`)."""
    return {"git_commit": git_commit(), "packages": environment(), "device": device_name(device)}
