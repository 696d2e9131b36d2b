"""Held-out test cases computed with the authors' TensorFlow code (twke18/Adaptive_Affinity_Fields).

Runs the official ``network/aaf/losses.py`` (``affinity_loss`` and ``adaptive_affinity_loss``,
with ``network/aaf/layers.py``) unchanged, in TensorFlow's v1 graph mode, on random inputs that
no other test uses, the way ``pyscripts/train/train_aaf.py`` combines them (softmax
probabilities; size weights ``softmax`` over 3 sizes of ``[C, 3]`` variables; the loss
``sum_k mean(edge_k) + mean(non_edge_k)`` with lambdas 1 and no decay), and stores the inputs,
the loss values and the gradients (logits and both weight variables) in an ``.npz`` that
``tests/test_official_tf.py`` checks ``aafcore`` against.

Needs TensorFlow (any 2.x, e.g. ``pip install tensorflow-cpu`` in a separate environment) and a
checkout of the official repository; it does not import ``aafcore``::

    python scripts/official_tf_cases.py --official /path/to/Adaptive_Affinity_Fields \\
        --out tests/fixtures/official_tf_cases.npz
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

# (N, C, H, W, ignore fraction, seed): held out, no other test uses these inputs
CASES = [(2, 5, 17, 14, 0.1, 101), (1, 21, 24, 30, 0.05, 202), (3, 3, 12, 13, 0.2, 303)]
MARGIN = 3.0


def case_inputs(n, c, h, w, ignore_frac, seed):
    """Logits ``[N, C, H, W]`` float32, blocky labels with noise and 255s ``[N, H, W]``, and the
    two ``[C, 3]`` weight variables (before their softmax over sizes)."""
    rng = np.random.default_rng(seed)
    logits = (1.5 * rng.standard_normal((n, c, h, w))).astype(np.float32)
    coarse = rng.integers(0, c, (n, -(-h // 3), -(-w // 3)))
    labels = coarse.repeat(3, 1).repeat(3, 2)[:, :h, :w]
    noise = rng.random((n, h, w)) < 0.1
    labels = np.where(noise, rng.integers(0, c, (n, h, w)), labels)
    labels = np.where(rng.random((n, h, w)) < ignore_frac, 255, labels).astype(np.int64)
    edge_w = rng.standard_normal((c, 3)).astype(np.float32)
    not_edge_w = rng.standard_normal((c, 3)).astype(np.float32)
    return logits, labels, edge_w, not_edge_w


def official_modules(root: Path):
    """The official losses module, imported with ``tensorflow`` mapped to ``tensorflow.compat.v1``
    (the code is TensorFlow 1: ``tf.log``, ``keep_dims=``)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow.compat.v1 as tf1

    tf1.disable_v2_behavior()
    sys.modules["tensorflow"] = tf1
    sys.path.insert(0, str(root))
    import network.aaf.losses as lossx  # noqa: E402  (the official code, unchanged)

    return tf1, lossx


def compute(tf, lossx, logits, labels, edge_w, not_edge_w):
    n, c, h, w = logits.shape
    graph = tf.Graph()
    with graph.as_default():
        x = tf.constant(logits.transpose(0, 2, 3, 1))  # NHWC, as the official code takes it
        lab = tf.constant(labels[..., None].astype(np.int32))  # [N, H, W, 1]
        we = tf.constant(edge_w.reshape(1, 1, 1, c, 1, 3))
        wn = tf.constant(not_edge_w.reshape(1, 1, 1, c, 1, 3))
        prob = tf.nn.softmax(x, axis=-1)
        one_hot = tf.one_hot(tf.squeeze(lab, axis=-1), depth=c)
        sw_e, sw_n = tf.nn.softmax(we, axis=-1), tf.nn.softmax(wn, axis=-1)
        aaf = 0.0
        for k, size in enumerate((1, 2, 3)):
            e, ne = lossx.adaptive_affinity_loss(lab, one_hot, prob, size, c, MARGIN, sw_e[..., k], sw_n[..., k])
            aaf += tf.reduce_mean(e) + tf.reduce_mean(ne)
        e1, ne1 = lossx.affinity_loss(lab, prob, c, MARGIN)
        affinity = tf.reduce_mean(e1) + tf.reduce_mean(ne1)
        grads = tf.gradients(aaf, [x, we, wn]) + tf.gradients(affinity, [x])
        with tf.Session(graph=graph) as sess:
            aaf_v, affinity_v, g_x, g_we, g_wn, g_x1 = sess.run([aaf, affinity] + grads)
    to_nchw = lambda g: g.transpose(0, 3, 1, 2)  # noqa: E731
    return {"aaf": np.float64(aaf_v), "aaf_grad_logits": to_nchw(g_x), "aaf_grad_edge_w": g_we.reshape(c, 3),
            "aaf_grad_not_edge_w": g_wn.reshape(c, 3), "affinity": np.float64(affinity_v),
            "affinity_grad_logits": to_nchw(g_x1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", type=Path, required=True, help="a checkout of twke18/Adaptive_Affinity_Fields")
    ap.add_argument("--out", type=Path, required=True, help="the .npz to write")
    args = ap.parse_args(argv)
    if not (args.official / "network" / "aaf" / "losses.py").is_file():
        sys.exit(f"official_tf_cases.py: {args.official} is not a checkout of the official repository "
                 f"(no network/aaf/losses.py)")
    tf, lossx = official_modules(args.official)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=args.official, capture_output=True,
                            text=True).stdout.strip() or "unknown"
    arrays = {"official_commit": np.array(commit), "tensorflow": np.array(tf.__version__),
              "margin": np.float64(MARGIN), "cases": np.array(len(CASES))}
    for i, case in enumerate(CASES):
        logits, labels, edge_w, not_edge_w = case_inputs(*case)
        arrays.update({f"{i}/logits": logits, f"{i}/labels": labels, f"{i}/edge_w": edge_w,
                       f"{i}/not_edge_w": not_edge_w})
        arrays.update({f"{i}/{key}": value for key, value in compute(tf, lossx, logits, labels, edge_w,
                                                                      not_edge_w).items()})
        print(f"case {i} {case[:4]}: AAF {arrays[f'{i}/aaf']:.6f}, affinity {arrays[f'{i}/affinity']:.6f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, args.out)
    print(f"wrote {args.out} (official commit {commit[:12]}, TensorFlow {arrays['tensorflow']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
