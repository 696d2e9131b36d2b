"""Run-time inference cost (Table 1's last column): single scale vs. multi-scale + flip vs. dense CRF.

One model and the same images for every mode, measured side by side in one run: each round
takes the next image of the split and times, for that image, the single-scale network pass,
the paper's multi-scale + flip pass (6 scales x 2 flips), the dense CRF on the single-scale
probabilities, and the metric update.  Reported: median milliseconds per image and the ratio of
each to the single-scale network pass, plus the wall time of a complete single-scale evaluation
of the split with every metric (the issue-4 budget: <= 60 s on 2 cores for the cpu profile).

The model is the run's checkpoint when it exists (``--run``), otherwise the profile's network
at random initialisation (the times do not depend on the weights; the metric time depends a
little on how many boundary pixels the predictions have).

    python benchmarks/evaluate.py --profile cpu --out results/benchmarks/evaluate_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aafcore.runs import cpu_name, environment, git_commit, load_checkpoint  # noqa: E402
from aafcore.crf import CRFParams, dense_crf  # noqa: E402
from aafcore.datasets import build_dataset  # noqa: E402
from aafcore.inference import InferenceConfig, evaluate_model, predict_probs  # noqa: E402
from aafcore.metrics import SegmentationMetrics  # noqa: E402
from aafcore.models import build_model  # noqa: E402
from aafcore.config import prepare_data, profile_config, run_dir  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--base", default="pspnet", choices=["fcn", "pspnet"])
    parser.add_argument("--run", help="run directory whose checkpoint to use (default: the baseline run)")
    parser.add_argument("--images", type=int, default=20, help="timed images (after one warm-up image)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-root")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)

    cfg = profile_config(args.profile, base=args.base)
    root = prepare_data(cfg, args.data_root, progress=False)
    ds = build_dataset(cfg.dataset, root, split=cfg.val_split)
    model = build_model(cfg.base, cfg.backbone, ds.num_classes, fcn_head=cfg.fcn_head)
    run = Path(args.run) if args.run else run_dir(cfg)
    weights = "random initialisation"
    if (run / "checkpoint.pt").is_file():
        model.load_state_dict(load_checkpoint(run / "checkpoint.pt")["model"])
        weights = str(run / "checkpoint.pt")
    model.to(args.device).eval()
    single, paper, crf = InferenceConfig(), InferenceConfig.paper(), CRFParams()

    times: dict[str, list[float]] = {"network_single_scale": [], "network_multiscale_flip": [],
                                     "crf": [], "metrics": []}
    metrics = SegmentationMetrics(ds.num_classes, ignore_index=ds.ignore_index)
    for i in range(min(args.images + 1, len(ds))):
        item = ds[i]
        x = item["image"][None].to(args.device)
        tick = time.perf_counter()
        probs = predict_probs(model, x, single)[0].cpu()
        t_single = time.perf_counter() - tick
        tick = time.perf_counter()
        predict_probs(model, x, paper)
        t_paper = time.perf_counter() - tick
        tick = time.perf_counter()
        dense_crf(ds.load_raw(i)[0], probs.numpy(), crf)
        t_crf = time.perf_counter() - tick
        tick = time.perf_counter()
        metrics.update(probs.argmax(0), item["label"], item["instance"])
        t_metrics = time.perf_counter() - tick
        if i == 0:
            continue  # warm-up
        for key, value in zip(times, (t_single, t_paper, t_crf, t_metrics)):
            times[key].append(value)

    full = evaluate_model(model, ds, args.device)
    medians = {k: statistics.median(v) * 1000 for k, v in times.items()}
    result = {
        "benchmark": "evaluate", "profile": args.profile, "base": cfg.base, "backbone": cfg.backbone,
        "split": cfg.val_split, "image_size": list(ds[0]["image"].shape[-2:]), "timed_images": len(times["crf"]),
        "weights": weights, "device": args.device, "crf": crf.as_dict(),
        "median_ms_per_image": medians,
        "ratio_to_single_scale_network": {k: v / medians["network_single_scale"] for k, v in medians.items()},
        "full_single_scale_evaluation": {"images": full["images"], "wall_seconds": full["wall_seconds"],
                                         "metric_seconds": full["metric_seconds"]},
        "provenance": {"git_commit": git_commit(), "packages": environment(),
                       "cpu": cpu_name(), "date": time.strftime("%Y-%m-%d")},
    }
    for key, ms in medians.items():
        print(f"{key:26s} {ms:9.2f} ms/image  {result['ratio_to_single_scale_network'][key]:7.2f}x")
    print(f"single-scale evaluation of {full['images']} {cfg.val_split} images with every metric: "
          f"{full['wall_seconds']:.1f} s (metrics {full['metric_seconds']:.1f} s)")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(result, indent=1))
        os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
