"""Training-step time of every method against the baseline, measured side by side in one run.

One :class:`aafcore.train.Trainer` per method is built from the same profile config; every
round feeds the *same* augmented batch (drawn as ``aaf train`` draws it) to each method in turn,
so machine noise hits all methods alike.  Reported: the median step time (forward, backward,
optimiser steps, the GAN discriminator step included), images/s, and the ratio to the baseline;
and the median time of the divergence check ``aaf train`` runs after every step (besides the
loss, :meth:`aafcore.train.Trainer.finite` on the batch-norm buffers) and of the full check it
runs at each checkpoint (every parameter and buffer), timed right after each step and reported
as fractions of it.

    python benchmarks/train_step.py --profile cpu --base pspnet --reps 30 --out results/benchmarks/train_step_cpu.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aafcore.runs import atomic_write_text, cpu_name, environment, git_commit  # noqa: E402
from aafcore.datasets import TrainAugment, build_dataset  # noqa: E402
from aafcore.config import METHODS, prepare_data, profile_config  # noqa: E402
from aafcore.train import Trainer, _step_samples  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--base", default="pspnet", choices=["fcn", "pspnet"])
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--reps", type=int, default=30, help="timed rounds (after --warmup rounds)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--backbone", help="override the profile's backbone (e.g. resnet101)")
    parser.add_argument("--crop-size", type=int, help="override the profile's crop (e.g. 336 = the voc profile)")
    parser.add_argument("--batch-size", type=int, help="override the profile's batch (per process)")
    parser.add_argument("--data-root")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    methods = args.methods.split(",")
    if methods[0] != "baseline":
        methods = ["baseline"] + [m for m in methods if m != "baseline"]

    base_cfg = profile_config(args.profile, base=args.base, backbone=args.backbone, crop_size=args.crop_size,
                              batch_size=args.batch_size)
    root = prepare_data(base_cfg, args.data_root, progress=False)
    ds = build_dataset(base_cfg.dataset, root, split=base_cfg.train_split)
    augment = TrainAugment(base_cfg.crop_size, scale_range=base_cfg.scale_range, ignore_index=ds.ignore_index)

    def batch(step):
        items = [augment(ds[i], torch.Generator().manual_seed(s))
                 for i, s in _step_samples(step, base_cfg.batch_size, len(ds), base_cfg.seed)]
        return torch.stack([it["image"] for it in items]), torch.stack([it["label"] for it in items])

    trainers = {m: Trainer(dataclasses.replace(base_cfg, method=m), ds.num_classes, args.device,
                           ds.ignore_index) for m in methods}
    times = {m: [] for m in methods}
    checks = {m: [] for m in methods}
    full_checks = {m: [] for m in methods}
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    for r in range(args.warmup + args.reps):
        images, labels = batch(r)
        for m in methods:
            sync()
            start = time.perf_counter()
            trainers[m].step(images, labels, r)
            sync()
            middle = time.perf_counter()
            assert trainers[m].finite(parameters=False), f"{m} diverged in the benchmark"
            end = time.perf_counter()
            assert trainers[m].finite(), f"{m} diverged in the benchmark"
            if r >= args.warmup:
                times[m].append(middle - start)
                checks[m].append(end - middle)
                full_checks[m].append(time.perf_counter() - end)

    base = statistics.median(times["baseline"])
    rows = []
    print(f"{args.profile} profile, {args.base}/{base_cfg.backbone}, batch {base_cfg.batch_size}, "
          f"crop {base_cfg.crop_size}, {args.device}, {torch.get_num_threads()} threads, {args.reps} rounds")
    print(f"{'method':<10}{'median ms':>11}{'img/s':>9}{'× baseline':>12}{'check/step':>12}{'full/step':>11}")
    for m in methods:
        med = statistics.median(times[m])
        row = {"method": m, "median_ms": 1e3 * med, "images_per_second": base_cfg.batch_size / med,
               "ratio_to_baseline": med / base,
               "quartiles_ms": [1e3 * q for q in statistics.quantiles(times[m], n=4)],
               "step_check_fraction": statistics.median(checks[m]) / med,
               "full_check_fraction": statistics.median(full_checks[m]) / med}
        rows.append(row)
        print(f"{m:<10}{row['median_ms']:>11.1f}{row['images_per_second']:>9.1f}{row['ratio_to_baseline']:>12.3f}"
              f"{row['step_check_fraction']:>12.4f}{row['full_check_fraction']:>11.4f}")
    if args.out:
        payload = {"benchmark": "train_step", "profile": args.profile, "base": args.base,
                   "backbone": base_cfg.backbone, "batch_size": base_cfg.batch_size,
                   "crop_size": base_cfg.crop_size, "reps": args.reps, "warmup": args.warmup,
                   "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
                   "provenance": {"git_commit": git_commit(), "packages": environment(),
                                  "cpu": cpu_name(), "date": time.strftime("%Y-%m-%d")},
                   "results": rows}
        if args.device.startswith("cuda"):  # every method's trainer is resident at once
            payload["peak_memory_gib_all_trainers"] = torch.cuda.max_memory_allocated() / 2**30
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps(payload, indent=1))
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
