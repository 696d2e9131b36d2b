"""The benchmark's geometry statistics (issue 14: shown before any non-baseline run): per-class
structure widths in logit cells and edge-pair shares per field size, on the whole train split of
benchmark v2, written to results/study/synthetic/benchmark-statistics.json with its provenance.

Run from the repository's root of a clean checkout:  python protocol/benchmark_stats.py [DATA_ROOT]
(default data root: where aafcore generates the study's benchmark, data/synthetic-study).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from aafcore.config import PROFILES, data_identity, prepare_data
from aafcore.datasets import SYNTHETIC_PROFILES, synthetic_meta
from aafcore.datasets.geometry_stats import benchmark_statistics
from aafcore.runs import git_commit, write_json

OUT = Path("results/study/synthetic/benchmark-statistics.json")


def main() -> None:
    root = prepare_data(PROFILES["study"], sys.argv[1] if len(sys.argv) > 1 else None, progress=False)
    start = time.perf_counter()
    stats = benchmark_statistics(root, "train", limit=None)
    stats["benchmark"] = data_identity(synthetic_meta(SYNTHETIC_PROFILES["study"]))
    stats["provenance"] = {"git_commit": git_commit(), "seconds": time.perf_counter() - start,
                           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_json(OUT, stats)
    print(f"{OUT}: {stats['images']} images in {stats['provenance']['seconds']:.0f} s")


if __name__ == "__main__":
    main()
