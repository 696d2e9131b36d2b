"""The ``aaf`` command line.

``aaf info`` prints the versions and devices that a result's provenance records.  The
``data``, ``train``, ``evaluate`` and ``reproduce`` subcommands arrive with the issues that
implement them.  Bad input exits with status 2 and a one-line reason.
"""

from __future__ import annotations

import argparse
import platform
import sys

from aafcore import __version__


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line: ``aaf: error: <reason>``."""

    def error(self, message: str):  # noqa: D102
        self.exit(2, f"{self.prog}: error: {message}\n")


def environment() -> dict:
    """Versions and devices of this machine: the provenance fields of a result."""
    import torch
    import torchvision

    info = {"aafcore": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "cpu_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available()}
    if info["cuda"]:
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def _info(_args) -> int:
    for key, value in environment().items():
        print(f"{key}: {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="aaf", description="Adaptive Affinity Fields companion (aafcore).")
    parser.add_argument("--version", action="version", version=f"aafcore {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    info = sub.add_parser("info", help="print versions and devices (the provenance of a result)")
    info.set_defaults(func=_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
