"""What keeps a training run's folder safe: its claim, divergence, interrupts, resume numerics.

* :func:`claim_folder`: what a run folder's contents mean for a new training: a finished run of
  the same configuration (skip), of another one (refused without ``force``), an unfinished one
  (continued), or nothing;
* :func:`divergence_error`, :func:`all_finite`: a NaN/inf stops training with "training diverged
  at step S" (or names the empty batch), and no non-finite checkpoint is written;
* :class:`DeferredInterrupt`: Ctrl-C ends the current step, writes a checkpoint, then stops;
* :func:`check_numerics`: a resume with another thread count, matmul precision, CPU kernels or
  device warns (:class:`ReproducibilityWarning`): the run will not be bit-identical.

Only :mod:`aafcore.runs` below it; :mod:`aafcore.train` uses all of it.
"""

from __future__ import annotations

import signal
import threading
import warnings
from pathlib import Path

import torch

from aafcore.runs import read_json

__all__ = ["ReproducibilityWarning", "claim_folder", "check_numerics", "DeferredInterrupt", "all_finite",
           "divergence_error", "RUN_FILES"]

RUN_FILES = ("metrics.json", "checkpoint.pt", "train_log.jsonl")   # what a retrain (--force) replaces


class ReproducibilityWarning(UserWarning):
    """A run resumed with other numerics (thread count, matmul precision, CPU kernels, device) than
    its checkpoint was written with: it will not be bit-identical to an uninterrupted run."""


def claim_folder(out: Path, expected_hash: str, resume: bool | None, force: bool) -> dict | None:
    """The finished result in run folder ``out`` to skip with (same ``config_hash``), or None to train.

    Called by the process that holds the folder's lock.  ``force`` removes the previous run's
    :data:`RUN_FILES` first, so that a killed ``--force`` retrain is recognisably unfinished (a
    checkpoint without ``metrics.json``).  Without it, a finished run of another configuration,
    a ``metrics.json`` that is not a result, or an unfinished run with ``resume=False`` is refused
    with a one-line ``ValueError``.
    """
    metrics, ckpt = out / "metrics.json", out / "checkpoint.pt"
    if force:
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
        return None
    if metrics.exists():
        previous = read_json(metrics)
        if not isinstance(previous, dict) or not isinstance(previous.get("config_hash"), str):
            raise ValueError(f"{metrics} is not a training result (a JSON {type(previous).__name__} without a "
                             f"config_hash): delete it, or pass --force to retrain")
        if previous["config_hash"] == expected_hash:
            return previous
        raise ValueError(f"{out} holds a finished run of another configuration (config hash "
                         f"{previous['config_hash']}, this one {expected_hash}): pass --force to replace it, "
                         f"or --out DIR to train this one elsewhere")
    if resume is False and ckpt.exists():
        raise ValueError(f"{out} holds an unfinished run ({ckpt}): continue it (leave resume at its default) "
                         f"or pass --force to start over")
    return None


def check_numerics(recorded: dict | None, now: dict, ckpt_path: Path) -> None:
    """Warn (:class:`ReproducibilityWarning`) when a resume runs with other numerics than the
    checkpoint at ``ckpt_path`` recorded (``{"cpu_threads": 2, ...}``)."""
    changed = [f"{k} {recorded[k]} -> {now[k]}" for k in now if recorded and k in recorded and recorded[k] != now[k]]
    if changed:
        warnings.warn(f"resuming {ckpt_path} with {', '.join(changed)}: the run will not be bit-identical to an "
                      f"uninterrupted one", ReproducibilityWarning, stacklevel=3)


class DeferredInterrupt:
    """Ctrl-C (SIGINT) inside the block sets :attr:`requested`; the loop finishes its step, writes a
    checkpoint and raises ``KeyboardInterrupt``.  A second Ctrl-C raises at once.  ``enabled`` only
    in the main thread (under torchrun the agent stops the processes)."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.requested, self.previous = False, None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        if self.enabled:
            self.previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self.enabled:
            signal.signal(signal.SIGINT, self.previous)


def all_finite(obj) -> bool:
    """Whether every floating tensor in a (nested) checkpoint dictionary is finite."""
    if isinstance(obj, torch.Tensor):
        return not obj.is_floating_point() or bool(obj.isfinite().all())
    if isinstance(obj, dict):
        return all(all_finite(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return all(all_finite(v) for v in obj)
    return True


def divergence_error(step: int, loss: float, lr: float, labels: torch.Tensor, ignore_index: int,
                     ckpt_path: Path, cause: str) -> FloatingPointError:
    """The error for a step that left something non-finite (``cause``): a batch whose every label
    pixel is ``ignore_index`` (a 0/0 cross-entropy) is named as such; otherwise "training diverged
    at step S (loss, lr): cause; lower the learning rate", and where the last finite checkpoint is."""
    if not bool((labels != ignore_index).any()):
        return FloatingPointError(f"step {step}: every label pixel of its batch is ignore_index ({ignore_index}), "
                                  f"so its cross-entropy is 0/0; check the label files (or train with larger crops)")
    kept = f"; the last finite checkpoint, {ckpt_path}, is kept" if ckpt_path.exists() else ""
    return FloatingPointError(f"training diverged at step {step} (loss {loss:.3g}, lr {lr:.3g}): {cause}; "
                              f"lower the learning rate (--lr){kept}")
