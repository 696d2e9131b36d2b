"""AAF loss speed and memory: a naive port of the authors' data flow vs ``aafcore.losses``.

Both implementations get the same inputs in one run: logits ``N(0, 2^2)`` and VOC-like label
maps at the logits' resolution (a background with 2-5 ellipses/rectangles of random classes,
half of the boundary pixels marked ignore, as VOC's void bands); ``--labels blocks`` gives random
6-px blocks of random classes with 5% scattered ignore pixels, ``--labels noise`` i.i.d. labels
(nearly every pair is an edge pair).  For each shape it prints the median fwd+bwd time of
interleaved runs of the two losses (aafcore with its default backend, the fused kernel on the
CPU, and again with its torch-ops backend) and of ``F.cross_entropy`` on the same logits (so that
machine noise hits all alike), each loss's time as a multiple of cross-entropy's, the
peak memory of one fwd+bwd, the ratios, and the largest difference between the two losses.

* CPU peak memory: the rise of the peak resident set size (VmHWM, reset just before) during one
  fwd+bwd, measured in a fresh child process per implementation and shape.
* CUDA peak memory (when a GPU is present): ``torch.cuda.max_memory_allocated``.

Usage::

    python benchmarks/aaf_loss.py                 # CPU, 2 threads, the three shapes of issue 2
    python benchmarks/aaf_loss.py --out results/benchmarks/aaf_loss_cpu.json
    python benchmarks/aaf_loss.py --labels blocks --out results/benchmarks/aaf_loss_cpu_blocks_labels.json
    python benchmarks/aaf_loss.py --device cuda   # on a GPU machine
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from aafcore.losses import AdaptiveAffinityFieldLoss, adaptive_affinity_field_loss  # noqa: E402
from aafcore.pairs import resolve_backend  # noqa: E402
from naive_aaf import naive_aaf  # noqa: E402

SHAPES = [(8, 21, 42, 42), (8, 19, 90, 90), (2, 21, 336, 336)]
SIZES = (3, 5, 7)


def scene_labels(n: int, h: int, w: int, c: int, seed: int = 0, ignore_index: int = 255) -> torch.Tensor:
    """VOC-like label maps ``[n, h, w]``: class 0 background, 2-5 objects of classes 1..c-1."""
    g = torch.Generator().manual_seed(seed)
    rnd = lambda: float(torch.rand(1, generator=g))  # noqa: E731
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    out = torch.zeros(n, h, w, dtype=torch.long)
    for b in range(n):
        for _ in range(int(torch.randint(2, 6, (1,), generator=g))):
            cls = int(torch.randint(1, c, (1,), generator=g))
            cy, cx, ry, rx = rnd() * h, rnd() * w, (0.1 + 0.3 * rnd()) * h, (0.1 + 0.3 * rnd()) * w
            if rnd() < 0.5:
                mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            else:
                mask = ((yy - cy).abs() <= ry) & ((xx - cx).abs() <= rx)
            out[b][mask] = cls
    boundary = torch.zeros_like(out, dtype=torch.bool)
    boundary[:, 1:] |= out[:, 1:] != out[:, :-1]
    boundary[:, :, 1:] |= out[:, :, 1:] != out[:, :, :-1]
    void = boundary & (torch.rand(out.shape, generator=g) < 0.5)
    return torch.where(void, torch.full_like(out, ignore_index), out)


def block_labels(n: int, h: int, w: int, c: int, seed: int = 0, block: int = 6, ignore_frac: float = 0.05,
                 ignore_index: int = 255) -> torch.Tensor:
    """Label maps ``[n, h, w]`` of random ``block`` x ``block`` squares of classes ``0..c-1``, with
    a fraction ``ignore_frac`` of pixels, scattered at random, set to ``ignore_index``."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, c, (n, 1, -(-h // block), -(-w // block)), generator=g).float()
    labels = F.interpolate(coarse, scale_factor=block, mode="nearest")[:, 0, :h, :w].long()
    return torch.where(torch.rand(n, h, w, generator=g) < ignore_frac, ignore_index, labels)


def make_inputs(shape, device, seed=0, kind="scenes"):
    n, c, h, w = shape
    g = torch.Generator().manual_seed(seed)
    logits = (2 * torch.randn(shape, generator=g)).to(device).requires_grad_()
    if kind == "scenes":
        labels = scene_labels(n, h, w, c, seed).to(device)
    elif kind == "blocks":
        labels = block_labels(n, h, w, c, seed).to(device)
    else:  # worst case: i.i.d. classes, nearly every pair is an edge pair
        labels = torch.randint(0, c, (n, h, w), generator=g).to(device)
    loss = AdaptiveAffinityFieldLoss(c, kernel_sizes=SIZES).to(device)
    return logits, labels, loss


def run_once(impl, logits, labels, loss):
    """One forward + backward; returns the loss value."""
    logits.grad = None
    loss.zero_grad(set_to_none=True)
    if impl == "ce":
        value = F.cross_entropy(logits, labels, ignore_index=255)
    elif impl == "naive":
        value = naive_aaf(logits, labels, loss.edge_logits, loss.not_edge_logits, SIZES)
    elif impl == "torch":  # aafcore's dense torch-ops backend
        value = adaptive_affinity_field_loss(logits, labels, loss.edge_logits, loss.not_edge_logits, SIZES,
                                             backend="torch")
    else:  # aafcore with its default backend (the fused kernel on the CPU)
        value = loss(logits, labels)
    value.backward()
    return value.detach()


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def edge_fraction(labels):
    from aafcore.pairs import pair_tables as _pair_tables
    _, y_j, valid = _pair_tables(labels, labels != 255, tuple((k - 1) // 2 for k in SIZES))
    return float((valid & (labels[:, None] != y_j)).sum() / valid.sum().clamp_min(1))


def time_shape(shape, device, reps, kind):
    logits, labels, loss = make_inputs(shape, device, kind=kind)
    impls = ("naive", "aafcore", "torch", "ce")
    values = {impl: run_once(impl, logits, labels, loss) for impl in impls}  # warm-up
    times = {impl: [] for impl in impls}
    for _ in range(reps):
        for impl in impls:
            _sync(device)
            start = time.perf_counter()
            run_once(impl, logits, labels, loss)
            _sync(device)
            times[impl].append(time.perf_counter() - start)
    diff = float((values["naive"] - values["aafcore"]).abs() / values["naive"].abs())
    return {impl: statistics.median(t) * 1e3 for impl, t in times.items()}, diff, edge_fraction(labels)


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_memory_mib(impl, shape, device, threads, kind):
    """Peak memory of one fwd+bwd in MiB (fresh child process on the CPU)."""
    if device == "cuda":
        logits, labels, loss = make_inputs(shape, device, kind=kind)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        run_once(impl, logits, labels, loss)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    cmd = [sys.executable, __file__, "--child", impl, ",".join(map(str, shape)), "--threads", str(threads),
           "--labels", kind]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def child(impl, shape, threads, kind):
    torch.set_num_threads(threads)
    logits, labels, loss = make_inputs(shape, "cpu", kind=kind)
    with open("/proc/self/clear_refs", "w") as f:  # reset the peak (VmHWM) to the current RSS
        f.write("5")
    base = _status_kib("VmRSS")
    run_once(impl, logits, labels, loss)
    print((_status_kib("VmHWM") - base) / 1024)


def provenance(device, threads):
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip() or None
    except OSError:
        commit = None
    cpu = platform.processor()
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"git_commit": commit, "torch": torch.__version__, "python": platform.python_version(),
            "device": torch.cuda.get_device_name() if device == "cuda" else f"{cpu} ({threads} threads)",
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=["cpu", "cuda", "all"], default="all",
                    help="'all' (default): the CPU, and CUDA when a GPU is present")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    ap.add_argument("--reps", type=int, default=5, help="timed runs per implementation and shape")
    ap.add_argument("--shapes", default=None, help="e.g. '8,21,42,42;8,19,90,90' (default: issue 2's three)")
    ap.add_argument("--labels", choices=["scenes", "blocks", "noise"], default="scenes",
                    help="VOC-like scenes (default), random 6-px blocks with 5%% ignored pixels, or i.i.d. "
                         "noise (nearly all pairs are edges)")
    ap.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    ap.add_argument("--child", nargs=2, metavar=("IMPL", "SHAPE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args.child[0], tuple(int(s) for s in args.child[1].split(",")), args.threads, args.labels)
    torch.set_num_threads(args.threads)
    shapes = SHAPES if args.shapes is None else [tuple(int(v) for v in s.split(",")) for s in args.shapes.split(";")]
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    if "cuda" in devices and not torch.cuda.is_available():
        if args.device == "cuda":
            sys.exit("aaf_loss.py: --device cuda but no CUDA GPU is available")
        devices.remove("cuda")
    report = {"benchmark": "aaf_loss", "kernel_sizes": list(SIZES), "reps": args.reps, "labels": args.labels,
              "results": []}
    for device in devices:
        prov = provenance(device, args.threads)
        print(f"\nAAF loss, sizes {SIZES}, float32 fwd+bwd on {prov['device']}, "
              f"median of {args.reps} interleaved runs; {args.labels} labels; torch {prov['torch']}")
        print(f"{'shape':>18} {'edge pairs':>10} {'naive ms':>10} {'aafcore ms':>10} {'CE ms':>7} {'speed-up':>9} "
              f"{'naive/CE':>9} {'aafcore/CE':>10} {'naive MiB':>10} {'aafcore MiB':>11} {'mem ratio':>9} "
              f"{'rel diff':>9}")
        for shape in shapes:
            ms, diff, frac = time_shape(shape, device, args.reps, args.labels)
            mem = {impl: peak_memory_mib(impl, shape, device, args.threads, args.labels)
                   for impl in ("naive", "aafcore")}
            backend = resolve_backend("aaf_loss.py", "auto", torch.empty(0, device=device))
            row = {"device": device, "shape": list(shape), "edge_pair_fraction": frac, "backend": backend,
                   "naive_ms": ms["naive"], "aafcore_ms": ms["aafcore"], "torch_backend_ms": ms["torch"],
                   "ce_ms": ms["ce"],
                   "speedup": ms["naive"] / ms["aafcore"], "naive_to_ce": ms["naive"] / ms["ce"],
                   "aafcore_to_ce": ms["aafcore"] / ms["ce"], "naive_peak_mib": mem["naive"],
                   "aafcore_peak_mib": mem["aafcore"], "memory_ratio": mem["naive"] / max(mem["aafcore"], 1e-9),
                   "loss_rel_diff": diff, "provenance": prov}
            report["results"].append(row)
            print(f"{str(list(shape)):>18} {frac:>10.1%} {ms['naive']:>10.1f} {ms['aafcore']:>10.1f} "
                  f"{ms['ce']:>7.2f} {row['speedup']:>8.1f}x {row['naive_to_ce']:>8.1f}x {row['aafcore_to_ce']:>9.1f}x "
                  f"{mem['naive']:>10.0f} {mem['aafcore']:>11.0f} "
                  f"{row['memory_ratio']:>8.1f}x {diff:>9.1e}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(args.out.suffix + ".tmp")
        tmp.write_text(json.dumps(report, indent=2) + "\n")
        os.replace(tmp, args.out)
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
