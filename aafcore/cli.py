"""The ``aaf`` command line.

* ``aaf info``: the versions and devices that a result's provenance records;
* ``aaf data synthetic --profile P [--out DIR]``: generate the synthetic benchmark;
* ``aaf train --profile P --base B --method M --seed S [--out DIR]``: train and evaluate one run;
* ``aaf evaluate RUN_DIR [--split val|test] [--domain source|shifted] [--multiscale] [--crf]``:
  evaluate a finished run again (RUN_DIR or the run of ``--profile --base --method --seed``).

* ``aaf reproduce --profile P``: every training and evaluation notebook, the results notebooks
  and the book (``make reproduce`` is ``aaf reproduce --profile cpu``).

Bad input (a missing, unreadable or corrupt file, an unwritable output folder, a run folder in use,
a diverged training, a missing GPU) exits with status 2 and a one-line reason (``aaf: error: ...``);
``--debug`` or ``AAF_DEBUG=1`` shows the traceback instead.  Ctrl-C stops after a consistent
checkpoint with status 130; SIGTERM removes temporary files and exits with 143.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
import warnings

from aafcore import __version__
from aafcore.config import (BACKBONES, BASES, METHODS, PROFILES, generation_workers, load_config, profile_config,
                            run_dir)
from aafcore.crf import crf_params
from aafcore.datasets import DATASETS, SYNTHETIC_PROFILES, generate_synthetic
from aafcore.errors import one_line
from aafcore.evaluate import PAPER_SCALES, InferenceConfig, evaluate_run
from aafcore.launch import EXECUTORS, Launcher
from aafcore.runs import check_writable_dir, environment
from aafcore.train import train


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line: ``aaf: error: <reason>``."""

    def error(self, message: str):  # noqa: D102
        self.exit(2, f"aaf: error: {message}\n")


def _info(_args) -> int:
    for key, value in environment().items():
        print(f"{key}: {value}")
    return 0


def _data(args) -> int:
    if args.profile not in SYNTHETIC_PROFILES:
        raise ValueError(f"unknown profile {args.profile!r}; choose from {', '.join(SYNTHETIC_PROFILES)}")
    out = args.out or f"data/synthetic-{args.profile}"
    check_writable_dir(out, "data folder")
    start = time.perf_counter()
    spec = SYNTHETIC_PROFILES[args.profile]
    root = generate_synthetic(out, spec, progress=not args.no_progress, workers=generation_workers(spec))
    print(f"synthetic benchmark ({args.profile}) at {root} ({time.perf_counter() - start:.1f} s)")
    return 0


def _kernel_sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(k) for k in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"kernel sizes must be comma-separated integers, got {text!r}")


def _train(args) -> int:
    if args.config is not None:  # the exact config of train_distributed / torchrun_command
        cfg = load_config(args.config)
    else:
        cfg = profile_config(args.profile, base=args.base, method=args.method, seed=args.seed,
                             backbone=args.backbone, steps=args.steps, batch_size=args.batch_size,
                             crop_size=args.crop_size, lr=args.lr, kernel_sizes=args.kernel_sizes,
                             weight_by=args.weight_by, pretrained=args.backbone_weights,
                             checkpoint_every=args.checkpoint_every, num_workers=args.workers,
                             finetune_steps=args.finetune_steps)
    if args.backbone_weights is not None and not os.path.isfile(args.backbone_weights):
        raise FileNotFoundError(f"backbone weights file not found: {args.backbone_weights}")
    if args.data_root is not None and not os.path.isdir(args.data_root):
        raise FileNotFoundError(f"data root not found: {args.data_root}")
    out = args.out or run_dir(cfg)
    result = train(cfg, out, data_root=args.data_root, resume=True if args.resume else None, force=args.force,
                   progress=not args.no_progress, device=args.device)
    if result:
        m = result["metrics"]
        extra = "".join(f", {k} {100 * v:.2f}" for k, v in m.items() if k.startswith("miou_"))
        print(f"{out}: val mIoU {100 * m['miou']:.2f}{extra}, pixel accuracy {100 * m['pixel_accuracy']:.2f}"
              f" ({result['provenance']['wall_seconds']:.0f} s)")
    return 0


def _fmt(value) -> str:
    return "n/a" if value is None or value != value else f"{100 * value:.2f}"


def _crf_option(text: str) -> dict:
    """``bi_w=3,bi_xy_std=15`` -> ``{"bi_w": 3.0, "bi_xy_std": 15.0}`` (checked by :func:`crf_params`)."""
    option = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        try:
            option[key.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected KEY=NUMBER pairs like bi_w=3,bi_xy_std=15, got {part!r}") from None
        if not sep:
            raise argparse.ArgumentTypeError(f"expected KEY=NUMBER pairs like bi_w=3,bi_xy_std=15, got {part!r}")
    try:
        crf_params(option)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return option


def _evaluate(args) -> int:
    run = args.run
    if run is None:
        cfg = profile_config(args.profile, base=args.base, method=args.method, seed=args.seed,
                             kernel_sizes=args.kernel_sizes)
        run = run_dir(cfg)
    if args.data_root is not None and not os.path.isdir(args.data_root):
        raise FileNotFoundError(f"data root not found: {args.data_root}")
    inference = InferenceConfig(scales=PAPER_SCALES if args.multiscale else (1.0,), flip=args.multiscale,
                                crop_size=args.window, crf=crf_params(args.crf_params or args.crf))
    result = evaluate_run(run, args.split, args.domain, inference=inference, data_root=args.data_root,
                          device=args.device, force=args.force, progress=not args.no_progress,
                          dataset=args.dataset)
    m, prov = result["metrics"], result["provenance"]
    crf = prov.get("crf_seconds_per_image")
    print(f"{run} [{result['evaluation']['split']}/{result['evaluation']['domain']}, {result['evaluation']['mode']}]: "
          f"mIoU {_fmt(m['miou'])}, pixel accuracy {_fmt(m['pixel_accuracy'])}, "
          f"instance mIoU {_fmt(m['instance_miou'])}, boundary recall {_fmt(m['mean_boundary_recall'])}, "
          f"precision {_fmt(m['mean_boundary_precision'])}; "
          f"{1000 * prov['inference_seconds_per_image']:.1f} ms/image network"
          + (f" + {1000 * crf:.1f} ms/image CRF" if crf is not None else ""))
    return 0


def _reproduce(args) -> int:
    if args.profile not in PROFILES:
        raise ValueError(f"unknown profile {args.profile!r}; choose from {', '.join(PROFILES)}")
    if PROFILES[args.profile].dataset != "synthetic":
        raise ValueError(f"aaf reproduce runs the synthetic benchmark; the {args.profile} profile is run one "
                         f"training at a time (papermill notebooks/train.ipynb ... -p profile {args.profile} "
                         f"-p data_root DIR), see the book's reproduction chapter")
    if args.data_root is not None and not os.path.isdir(args.data_root):
        raise FileNotFoundError(f"data root not found: {args.data_root}")
    from aafcore.reproduce import reproduce   # it imports the report package: only for this command

    launcher = Launcher(jobs=args.jobs, executor=args.executor, partition=args.partition, time_min=args.time_min,
                        gpus_per_job=args.gpus_per_job, cpus_per_job=args.cpus_per_job)
    return reproduce(args.profile, results_root=args.results, data_root=args.data_root, force=args.force,
                     book=not args.no_book, only=args.only, dry_run=args.dry_run, launcher=launcher,
                     reports=not args.no_reports)


def _add_reproduce(sub) -> None:
    """The ``aaf reproduce`` sub-command and its options (how the study's jobs are launched too)."""
    rp = sub.add_parser("reproduce", help="run every training/evaluation notebook, the results and the book")
    rp.add_argument("--profile", default="cpu", help="smoke, cpu or gpu (default cpu)")
    rp.add_argument("--results", default="results", help="results root (default results)")
    rp.add_argument("--data-root", help="dataset directory (default: generate data/synthetic-<profile>)")
    rp.add_argument("--force", action="store_true", help="re-run every notebook and retrain every run")
    rp.add_argument("--only", help="only the runs whose name contains this, or one of these comma-separated parts "
                         "(e.g. pspnet-aaf-s0 or pspnet-baseline-s3,pspnet-aaf-s3)")
    rp.add_argument("--no-book", action="store_true", help="do not build the book")
    rp.add_argument("--no-reports", action="store_true", help="only the trainings and evaluations")
    rp.add_argument("--jobs", type=int, default=1,
                    help="trainings (then evaluations) side by side: one per GPU, or the CPU cores shared out")
    rp.add_argument("--executor", default="local", choices=EXECUTORS,
                    help="local (this machine), slurm (each job through submitit), submitit-local (a test)")
    rp.add_argument("--partition", help="Slurm partition (--executor slurm)")
    rp.add_argument("--time-min", type=int, default=60, help="Slurm time limit per job, minutes (default 60)")
    rp.add_argument("--gpus-per-job", type=int, default=0, help="Slurm GPUs per job (default 0)")
    rp.add_argument("--cpus-per-job", type=int, help="Slurm CPUs per job")
    rp.add_argument("--dry-run", action="store_true", help="list what would run")
    rp.set_defaults(func=_reproduce)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="aaf", description="Adaptive Affinity Fields companion (aafcore).")
    parser.add_argument("--version", action="version", version=f"aafcore {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (also AAF_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    info = sub.add_parser("info", help="print versions and devices (the provenance of a result)")
    info.set_defaults(func=_info)

    data = sub.add_parser("data", help="generate the built-in synthetic benchmark")
    data.add_argument("dataset", choices=["synthetic"], help="the dataset to generate")
    data.add_argument("--profile", default="cpu", help="size profile: smoke, cpu or gpu (default cpu)")
    data.add_argument("--out", help="output directory (default data/synthetic-<profile>)")
    data.add_argument("--no-progress", action="store_true", help="no progress bar")
    data.set_defaults(func=_data)

    tr = sub.add_parser("train", help="train one method and evaluate it on the val split")
    tr.add_argument("--profile", default="cpu",
                    help="smoke, cpu, gpu (synthetic) or voc, cityscapes (real data, paper settings); default cpu")
    tr.add_argument("--base", default="pspnet", choices=BASES)
    tr.add_argument("--method", default="baseline", choices=METHODS)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--out", help="run directory (default results/<profile>/<dataset>/<base>-<method>-s<seed>)")
    tr.add_argument("--data-root", help="dataset directory (synthetic default: generate data/synthetic-<profile>; "
                                        "voc: holds VOCdevkit/ and benchmark_RELEASE/; cityscapes: leftImg8bit/, gtFine/)")
    tr.add_argument("--resume", action="store_true",
                    help="continue from the run's last checkpoint (the default when it has one; says so when not)")
    tr.add_argument("--force", action="store_true",
                    help="retrain from scratch, replacing the folder's run (finished or not, any config)")
    tr.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    tr.add_argument("--backbone", choices=BACKBONES,
                    help="override the profile's backbone")
    tr.add_argument("--backbone-weights", help="local torchvision ResNet weights file (ImageNet init)")
    tr.add_argument("--steps", type=int, help="override the profile's number of steps (first stage)")
    tr.add_argument("--finetune-steps", type=int, help="override the second stage's steps (voc: 30000; 0 = none)")
    tr.add_argument("--batch-size", type=int, help="override the global batch size")
    tr.add_argument("--crop-size", type=int, help="override the training crop size")
    tr.add_argument("--lr", type=float, help="override the base learning rate")
    tr.add_argument("--kernel-sizes", type=_kernel_sizes, help="AAF kernel sizes, e.g. 3,5,7")
    tr.add_argument("--weight-by", choices=["label", "channel"], help="AAF weight indexing (default label)")
    tr.add_argument("--checkpoint-every", type=int, help="steps between checkpoints")
    tr.add_argument("--workers", type=int, help="data-loading worker processes")
    tr.add_argument("--config", help="a JSON file of every TrainConfig field (overrides the options above)")
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")
    tr.set_defaults(func=_train)

    ev = sub.add_parser("evaluate", help="evaluate a finished run (any split, domain, multi-scale, CRF)")
    ev.add_argument("run", nargs="?", metavar="RUN_DIR",
                    help="run directory (default: the run of --profile/--base/--method/--seed)")
    ev.add_argument("--profile", default="cpu", help="the profile, to locate the run (default cpu)")
    ev.add_argument("--base", default="pspnet", choices=BASES)
    ev.add_argument("--method", default="baseline", choices=METHODS)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--kernel-sizes", type=_kernel_sizes, help="AAF kernel sizes of the run, e.g. 3,5")
    ev.add_argument("--split", default="val",
                    help="train, val, test (synthetic, cityscapes), train_aug (voc_aug), all or part1 (gta5)")
    ev.add_argument("--dataset", choices=DATASETS,
                    help="evaluate on another dataset with the same classes (Table 11: a cityscapes run on gta5)")
    ev.add_argument("--domain", default="source", choices=["source", "shifted"],
                    help="appearance domain (synthetic: shifted = Table 11's unseen domain)")
    ev.add_argument("--multiscale", action="store_true",
                    help="scales 0.5-1.75 with left-right flip (the paper's test protocol)")
    ev.add_argument("--crf", action="store_true", help="dense-CRF post-processing (the paper's parameters)")
    ev.add_argument("--crf-params", type=_crf_option, metavar="K=V,...",
                    help="dense CRF with these parameters over the paper's, e.g. bi_w=3,bi_xy_std=15 (implies --crf)")
    ev.add_argument("--window", type=int,
                    help="sliding-window crop size (default: the profile's, voc 480 / cityscapes 720; else whole image)")
    ev.add_argument("--data-root", help="dataset directory (default: where the run read its data)")
    ev.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ev.add_argument("--force", action="store_true", help="re-evaluate even if the result exists")
    ev.add_argument("--no-progress", action="store_true", help="no progress bar")
    ev.set_defaults(func=_evaluate)

    _add_reproduce(sub)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"aaf: warning: {one_line(message)}", file=sys.stderr)


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that ``finally`` blocks (temporary folders, locks) run."""


def _on_sigterm(signum, frame):
    raise Terminated()


# The anticipated failures: bad or missing files, unwritable paths, corrupt JSON, checkpoints and
# label files, a diverged training, a missing optional package or device.  Each ends as one line.
EXPECTED_ERRORS = (ValueError, OSError, FloatingPointError, ImportError)


def main(argv: list[str] | None = None) -> int:
    """Run the command of ``argv``; an anticipated failure prints ``aaf: error: <reason>`` and returns
    2, Ctrl-C prints one line and returns 130, SIGTERM returns 143 (temporary files removed on the
    way out).  ``--debug`` or ``AAF_DEBUG=1`` lets the traceback through instead."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    debug = args.debug or os.environ.get("AAF_DEBUG", "") not in ("", "0")
    if not debug:   # warnings on one line too
        warnings.showwarning = _show_warning
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return args.func(args)
    except EXPECTED_ERRORS as exc:
        if debug:
            raise
        print(f"aaf: error: {one_line(exc) or type(exc).__name__} (--debug shows the traceback)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print("aaf: interrupted (files on disk are consistent; an unfinished run continues where it stopped "
              "when started again)", file=sys.stderr)
        return 130
    except Terminated:
        print("aaf: terminated", file=sys.stderr)
        return 143


if __name__ == "__main__":
    sys.exit(main())
