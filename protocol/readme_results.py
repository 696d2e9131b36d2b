"""Write (or, with --check, compare) the README's study results block from results/study/synthetic/.

The block lies between the markers of ``aafcore.report.study.README_START`` / ``README_END``; every
number in it comes from ``aafcore.report.study.readme_summary`` (the study's runs and ledger), so
the README cannot drift from the results: ``tests/test_project.py`` compares them.

    python protocol/readme_results.py           # rewrite the block in README.md
    python protocol/readme_results.py --check   # exit 1 when the block is out of date
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aafcore import report  # noqa: E402
from aafcore.report import study  # noqa: E402


def summary(results_root: str | Path = ROOT / "results") -> str:
    """The block as the results under ``results_root`` give it (no study run yet: the plan only)."""
    import pandas as pd

    protocol = report.load_protocol()
    try:
        df = report.load_results("study", "synthetic", results_root)
    except FileNotFoundError:
        df = pd.DataFrame(columns=["run", "tag", "base", "method", "seed", "kernel_sizes", "weight_by", "miou"])
    return study.readme_summary(df, protocol, report.study_ledger(df, protocol) if len(df) else None,
                                study.compute_budget(protocol, results_root))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when README.md's block is out of date")
    args = parser.parse_args(argv)
    readme = ROOT / "README.md"
    text = readme.read_text()
    old, new = study.readme_block(text), summary()
    if args.check:
        if old != new:
            print(f"{readme}: the study results block is out of date (python protocol/readme_results.py)",
                  file=sys.stderr)
            return 1
        return 0
    tmp = readme.with_name(f".{readme.name}.tmp{os.getpid()}")
    tmp.write_text(text.replace(old, new))
    tmp.replace(readme)
    print(f"{readme}: study results block written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
