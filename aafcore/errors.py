"""The one helper every layer shares: error messages on one line.

The command line promises ``aaf: error: <one line>``; library errors are built with
:func:`one_line` so that a multi-line message from numpy, PIL or json stays on that line.
"""

from __future__ import annotations

__all__ = ["one_line"]


def one_line(text: object) -> str:
    """``str(text)`` with every run of white space (newlines included) folded to one space."""
    return " ".join(str(text).split())
