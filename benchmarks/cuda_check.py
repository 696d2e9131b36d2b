"""Does the accelerator path compute what the CPU computes?  A check to run on a GPU machine.

Three checks, each recorded in the JSON report:

1. **Losses**: ``AffinityFieldLoss`` and ``AdaptiveAffinityFieldLoss`` (sizes 3, 5, 7) on the
   device in float32 against the same inputs in float64 on the CPU: the largest relative
   difference of the loss, of the gradient w.r.t. the logits and (AAF) w.r.t. the kernel-size
   weight logits.  Inputs: logits ``N(0, 2^2)`` ``[4, 21, 48, 48]``, VOC-like label maps with
   ignore bands (``benchmarks/aaf_loss.py``'s ``scene_labels``); also with bfloat16 logits,
   the dtype they have under the trainer's autocast before it casts them to float32.
2. **Trainer steps**: three :class:`aafcore.train.Trainer` steps of every method at the smoke
   profile with bfloat16 autocast and channels_last (the CUDA settings): all losses finite and
   the parameters changed.
3. **A whole run**: ``aafcore.train.train`` of the smoke profile (train, evaluate, metrics.json)
   on the device.

    python benchmarks/cuda_check.py --device cuda --out results/benchmarks/cuda_check.json

``--device cpu`` runs the same checks on the CPU (what the test suite does, so this script
keeps working where there is no GPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from aafcore import losses  # noqa: E402
from aafcore.runs import cpu_name, environment, git_commit  # noqa: E402
from aafcore.config import METHODS, profile_config  # noqa: E402
from aafcore.train import Trainer, train  # noqa: E402

from aaf_loss import scene_labels  # noqa: E402

# float32 on the device against float64 on the CPU; bfloat16 inputs are compared with the same
# bfloat16 values upcast, so the tolerance is float32's, not bfloat16's.
LOSS_RTOL = 1e-4


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def check_losses(device: str, shape=(4, 21, 48, 48), seed: int = 0) -> list[dict]:
    """Loss and gradients on ``device`` (float32) vs CPU float64, for Affinity and AAF."""
    n, c, h, w = shape
    g = torch.Generator().manual_seed(seed)
    labels = scene_labels(n, h, w, c, seed=seed)
    rows = []
    for input_dtype in (torch.float32, torch.bfloat16):
        logits = (2 * torch.randn(shape, generator=g)).to(input_dtype).double()
        for name in ("affinity", "aaf"):
            def make():
                if name == "affinity":
                    return losses.AffinityFieldLoss(c)
                loss = losses.AdaptiveAffinityFieldLoss(c, (3, 5, 7))
                with torch.no_grad():  # non-uniform weights, so their gradients are not symmetric
                    loss.edge_logits.copy_(torch.randn(c, 3, generator=torch.Generator().manual_seed(1)))
                    loss.not_edge_logits.copy_(torch.randn(c, 3, generator=torch.Generator().manual_seed(2)))
                return loss

            ref_mod, dev_mod = make().double(), make().to(device)
            x_ref = logits.clone().requires_grad_(True)
            x_dev = logits.to(device, input_dtype).float().requires_grad_(True)
            ref = ref_mod(x_ref, labels)
            out = dev_mod(x_dev, labels.to(device))
            ref.backward()
            out.backward()
            row = {"loss": name, "input_dtype": str(input_dtype).replace("torch.", ""), "shape": list(shape),
                   "value_device": float(out.detach()), "value_cpu_float64": float(ref.detach()),
                   "loss_rel_diff": abs(float(out) - float(ref)) / abs(float(ref)),
                   "grad_logits_rel_diff": _rel(x_dev.grad, x_ref.grad)}
            if name == "aaf":
                row["grad_weights_rel_diff"] = max(_rel(dev_mod.edge_logits.grad, ref_mod.edge_logits.grad),
                                                   _rel(dev_mod.not_edge_logits.grad, ref_mod.not_edge_logits.grad))
            row["ok"] = all(v <= LOSS_RTOL for k, v in row.items() if k.endswith("rel_diff"))
            rows.append(row)
    return rows


def check_trainer_steps(device: str, steps: int = 3) -> list[dict]:
    """``steps`` Trainer steps per method with the CUDA settings (autocast bf16, channels_last)."""
    cfg = profile_config("smoke", amp=True, channels_last=True)
    g = torch.Generator().manual_seed(0)
    images = torch.randn(cfg.batch_size, 3, cfg.crop_size, cfg.crop_size, generator=g)
    labels = torch.randint(0, 8, (cfg.batch_size, cfg.crop_size, cfg.crop_size), generator=g)
    labels[:, :4] = 255
    rows = []
    for method in METHODS:
        trainer = Trainer(dataclasses.replace(cfg, method=method), 8, device)
        before = [p.detach().clone() for p in trainer.model.parameters()]
        records = [trainer.step(images, labels, t) for t in range(steps)]
        changed = any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
        finite = all(torch.isfinite(torch.tensor(v)).item() for r in records for v in r.values())
        rows.append({"method": method, "amp": trainer.amp, "losses": [r["loss"] for r in records],
                     "finite": finite, "parameters_changed": changed, "ok": finite and changed})
    return rows


def check_run(device: str) -> dict:
    """One smoke-profile run through :func:`aafcore.train.train` on ``device``."""
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("AAF_DATA", str(Path(tmp) / "data"))
        cfg = profile_config("smoke", method="aaf")
        result = train(cfg, Path(tmp) / "run", progress=False, device=device)
    m = result["metrics"]
    on_device = device == "cpu" or result["provenance"]["device"] != "cpu"
    ok = 0.0 <= m["miou"] <= 1.0 and on_device
    return {"device": result["provenance"]["device"], "miou": m["miou"], "pixel_accuracy": m["pixel_accuracy"],
            "wall_seconds": result["provenance"]["wall_seconds"], "ok": bool(ok)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--out", type=Path, help="write the report as JSON here")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("cuda_check: no CUDA device on this machine", file=sys.stderr)
        return 2
    report = {"benchmark": "cuda_check", "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
              "provenance": {"git_commit": git_commit(), "packages": environment(), "cpu": cpu_name(),
                             "date": time.strftime("%Y-%m-%d")},
              "losses": check_losses(args.device), "trainer_steps": check_trainer_steps(args.device),
              "run": check_run(args.device)}
    report["ok"] = (all(r["ok"] for r in report["losses"]) and all(r["ok"] for r in report["trainer_steps"])
                    and report["run"]["ok"])
    for r in report["losses"]:
        print(f"{r['loss']:<9}{r['input_dtype']:<10}loss {r['loss_rel_diff']:.1e}  grad {r['grad_logits_rel_diff']:.1e}"
              + (f"  weights {r['grad_weights_rel_diff']:.1e}" if "grad_weights_rel_diff" in r else "")
              + ("" if r["ok"] else "  FAIL"))
    for r in report["trainer_steps"]:
        print(f"step {r['method']:<9} amp={r['amp']} losses {[round(v, 4) for v in r['losses']]}"
              + ("" if r["ok"] else "  FAIL"))
    print(f"run: {report['run']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_name(args.out.name + ".tmp")
        tmp.write_text(json.dumps(report, indent=1))
        os.replace(tmp, args.out)
        print(f"wrote {args.out}")
    print("OK" if report["ok"] else "FAILED")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
