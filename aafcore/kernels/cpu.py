"""Backend ``"cpp"``: the fused CPU kernel of the AAF pair sums (``pairkl.cpp``).

The kernel is compiled on first use with ``$CXX`` (default ``c++``), ``-O3 -march=native``, into
``$AAF_KERNEL_CACHE`` (default ``~/.cache/aafcore``; the system's temporary folder when that cannot
be written) under a name that hashes the source, the flags and the CPU, and loaded with ctypes (a
call releases the GIL, so images run on ``torch.get_num_threads()`` Python threads side by side).  :func:`available` says whether it
builds; :func:`build_error` why not.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("pairkl.cpp")
FLAGS = ["-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-fno-math-errno", "-fno-trapping-math"]


def _cpu_id() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
        return next((line for line in info.splitlines() if line.startswith("flags")), "") + platform.processor()
    except OSError:
        return platform.machine() + platform.processor()


@functools.lru_cache(maxsize=1)
def _library() -> ctypes.CDLL | str:
    """The loaded kernel library, or the reason it could not be built (a string)."""
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        return f"no C++ compiler ({compiler!r} is not on PATH; set CXX)"
    src = SOURCE.read_bytes()
    key = hashlib.sha256(src + " ".join([compiler, *FLAGS, _cpu_id()]).encode()).hexdigest()[:16]
    home = Path(os.environ.get("AAF_KERNEL_CACHE") or Path.home() / ".cache" / "aafcore")
    errors = []
    for cache in (home, Path(tempfile.gettempdir()) / f"aafcore-{os.getuid()}"):  # a read-only home: /tmp
        target = cache / f"pairkl-{key}.so"
        try:
            if not target.exists():
                cache.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryDirectory(dir=cache) as tmp:  # build aside, then rename: never half-written
                    built = Path(tmp) / target.name
                    proc = subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", str(built)], capture_output=True,
                                          text=True)
                    if proc.returncode:
                        last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
                        return f"{compiler} failed on {SOURCE.name}: {last}"
                    os.replace(built, target)
            lib = ctypes.CDLL(str(target))
            break
        except OSError as err:
            errors.append(f"{cache}: {err}")
    else:
        return "cannot build or load the kernel (" + "; ".join(errors) + ")"
    i64, ptr, dbl = ctypes.c_int64, ctypes.c_void_p, ctypes.c_double
    head = [i64] * 7 + [ptr, ptr, ptr, i64, dbl, ctypes.c_int]  # first, last, C, H, W, pad, K, steps, p, labels, ...
    for suffix in ("f32", "f64"):
        fwd = getattr(lib, f"aaf_pairkl_forward_{suffix}")
        fwd.argtypes, fwd.restype = head + [ptr, ptr, ptr], None
        bwd = getattr(lib, f"aaf_pairkl_backward_{suffix}")
        bwd.argtypes, bwd.restype = head + [ptr, ptr, ptr], None
    return lib


def available() -> bool:
    """Whether the kernel builds (and loads) on this machine."""
    return not isinstance(_library(), str)


def build_error() -> str | None:
    """Why the kernel cannot be used here, or ``None``."""
    lib = _library()
    return lib if isinstance(lib, str) else None


@functools.lru_cache(maxsize=4)
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aaf-pairkl")


def _run(fn, n: int, *args) -> None:
    """``fn(first, last, *args)`` over images ``[0, n)`` split among ``torch.get_num_threads()`` threads."""
    workers = max(1, min(n, torch.get_num_threads()))
    if workers == 1:
        fn(0, n, *args)
        return
    bounds = [n * t // workers for t in range(workers + 1)]
    futures = [_pool(workers).submit(fn, bounds[t], bounds[t + 1], *args) for t in range(workers)]
    for f in futures:
        f.result()


class PairKLCpp(torch.autograd.Function):
    """:class:`aafcore.pairs._PairKL` on the CPU kernel: the same inputs and outputs.

    Inputs: ``p [N, C, H, W]`` probabilities (float32 or float64, CPU), ``labels [N, H, W]``
    integer, ``grid`` (the :class:`aafcore.pairs._Flat` of ``H, W`` and the sizes: its ``pad``
    and ``steps``), ``margin``, ``by_channel``, ``ignore_index``.  Returns ``edge, non_edge
    [K, C]`` and the counts ``n_edge, n_non_edge [K]``.  Saves only ``p`` and the labels: the
    kernel recomputes the clipped logarithms backward (they cost less than storing them).
    """

    @staticmethod
    def forward(ctx, p, labels, grid, margin, by_channel, ignore_index):
        lib = _library()
        p, labels = p.contiguous(), labels.long().contiguous()
        n, c, h, w = p.shape
        k = len(grid.steps) // 8
        steps = torch.tensor(grid.steps, dtype=torch.int64)
        edge = torch.zeros(n, k, c, dtype=torch.float64)
        non_edge = torch.zeros(n, k, c, dtype=torch.float64)
        counts = torch.zeros(n, 2, k, dtype=torch.int64)
        fn = lib.aaf_pairkl_forward_f64 if p.dtype == torch.float64 else lib.aaf_pairkl_forward_f32
        _run(fn, n, c, h, w, grid.pad, k, steps.data_ptr(), p.data_ptr(), labels.data_ptr(), int(ignore_index),
             float(margin), int(by_channel), edge.data_ptr(), non_edge.data_ptr(), counts.data_ptr())
        pairs, edge_pairs = counts.sum(0)
        n_edge = 2 * edge_pairs
        n_non_edge = c * pairs - n_edge
        ctx.mark_non_differentiable(n_edge, n_non_edge)
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(p, labels, steps)
        ctx.pad, ctx.margin, ctx.by_channel, ctx.ignore_index = grid.pad, margin, by_channel, ignore_index
        return edge.sum(0).to(p.dtype), non_edge.sum(0).to(p.dtype), n_edge, n_non_edge

    @staticmethod
    def backward(ctx, g_edge, g_non_edge, _g_n_edge, _g_n_non_edge):
        p, labels, steps = ctx.saved_tensors
        lib = _library()
        n, c, h, w = p.shape
        g_edge = g_edge.to(p.dtype).contiguous()
        g_non_edge = g_non_edge.to(p.dtype).contiguous()
        dp = torch.empty_like(p)
        fn = lib.aaf_pairkl_backward_f64 if p.dtype == torch.float64 else lib.aaf_pairkl_backward_f32
        _run(fn, n, c, h, w, ctx.pad, len(steps) // 8, steps.data_ptr(), p.data_ptr(), labels.data_ptr(),
             int(ctx.ignore_index), float(ctx.margin), int(ctx.by_channel), g_edge.data_ptr(), g_non_edge.data_ptr(),
             dp.data_ptr())
        return dp, None, None, None, None, None
