"""Several processes: torchrun's environment, synchronised batch norm on the CPU, the torchrun command.

Under ``torchrun`` every rank takes its slice of the same global batch, the model is wrapped in
``DistributedDataParallel`` with synchronised batch norm (torch's ``SyncBatchNorm`` on CUDA,
:class:`CPUSyncBatchNorm` on the CPU where torch's does not run), and only rank 0 evaluates and
writes (:func:`aafcore.train.train`).
"""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["CPUSyncBatchNorm", "convert_sync_batchnorm", "dist_info", "init_process_group", "average_gradients",
           "torchrun_command"]


class CPUSyncBatchNorm(nn.BatchNorm2d):
    """Batch norm whose training statistics are pooled over all processes (for gloo on the CPU).

    torch's ``SyncBatchNorm`` only runs on accelerators.  Here the per-channel ``Σx``, ``Σx²`` and
    counts are summed with the differentiable ``torch.distributed.nn.functional.all_reduce``,
    so the result (and its gradient) equals batch norm over the global batch.
    """

    def forward(self, x):
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        c = x.shape[1]
        count = x.new_full((1,), x.numel() // c)
        stats = all_reduce(torch.cat((x.sum((0, 2, 3)), x.square().sum((0, 2, 3)), count)))
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean.square()).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean, alpha=m)
                self.running_var.mul_(1 - m).add_(var * n / (n - 1).clamp_min(1), alpha=m)
        shape = (1, c, 1, 1)
        y = (x - mean.view(shape)) * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Synchronised batch norm: torch's on CUDA, :class:`CPUSyncBatchNorm` on the CPU."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            new = CPUSyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                   child.track_running_stats)
            new.load_state_dict(child.state_dict())
            setattr(module, name, new)
        else:
            convert_sync_batchnorm(child, device)
    return module


def dist_info() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) otherwise."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def init_process_group(device: torch.device) -> None:
    """Join torchrun's process group once: NCCL on CUDA (this process's GPU), gloo on the CPU."""
    if dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def average_gradients(params) -> None:
    """All-reduce-average the gradients of parameters that DDP does not manage."""
    world = dist.get_world_size()
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(world)


def torchrun_command(config_file: str | os.PathLike, out_dir: str | os.PathLike, processes: int, *,
                     data_root: str | os.PathLike | None = None, force: bool = False, device: str = "auto",
                     standalone: bool = True) -> list[str]:
    """The command that trains the config in ``config_file`` (JSON) with ``processes`` processes.

    ``python -m torch.distributed.run --standalone --nproc_per_node N -m aafcore.cli train --config CONFIG
    --out OUT``:
    one process per GPU (``LOCAL_RANK`` picks the GPU, NCCL), or gloo on the CPU.  For several
    machines, run ``torchrun --nnodes M --node_rank R --rdzv-backend c10d --rdzv-endpoint HOST:PORT``
    with the same arguments on each (``standalone=False`` leaves the rendezvous to you).
    """
    cmd = [sys.executable, "-m", "torch.distributed.run"]
    if standalone:
        cmd.append("--standalone")
    cmd += ["--nproc_per_node", str(int(processes)), "-m", "aafcore.cli", "train", "--config", str(config_file),
            "--out", str(out_dir), "--device", device, "--no-progress"]
    if data_root is not None:
        cmd += ["--data-root", str(data_root)]
    if force:
        cmd.append("--force")
    return cmd
