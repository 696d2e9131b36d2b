"""The one helper every layer shares: error messages on one line.

The command line promises ``aaf: error: <one line>``; library errors are built with
:func:`one_line` so that a multi-line message from numpy, PIL or json stays on that line.
"""

from __future__ import annotations

__all__ = ["one_line", "check_name", "NonFiniteError"]


def one_line(text: object) -> str:
    """``str(text)`` with every run of white space (newlines included) folded to one space."""
    return " ".join(str(text).split())


def check_name(value: object, what: str) -> str:
    """``value`` when it is a plain file or folder name (a split, a profile, a run or an image id);
    a one-line ``ValueError`` naming ``what`` when it is empty, holds a path separator or a NUL,
    or is ``.``/``..`` (a name must never lead a write out of its folder)."""
    if not isinstance(value, str) or not value or value in (".", "..") or any(c in value for c in "/\\\0"):
        raise ValueError(f"{what} {value!r} is not a plain name (no '/', '\\', '..' or empty names)")
    return value


class NonFiniteError(ValueError):
    """An input holds NaN or inf (a loss's logits): a ``ValueError`` that a training loop can tell
    apart from other bad input, to report the divergence with its step."""
