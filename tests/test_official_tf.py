"""aafcore against the authors' TensorFlow code itself, on held-out cases computed with it.

``tests/fixtures/official_tf_cases.npz`` was written by ``scripts/official_tf_cases.py``, which
runs the official ``network/aaf/losses.py`` (twke18/Adaptive_Affinity_Fields, the commit stored
in the file) unchanged under TensorFlow's v1 graph mode, in float32, combined as the official
``train_aaf.py`` combines it: the AAF loss over sizes 3, 5, 7 with softmax size weights, and the
3x3 affinity loss.  The inputs are float32; aafcore recomputes in float64 from the same inputs,
so the tolerance is TensorFlow's float32 rounding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from aafcore.losses import AdaptiveAffinityFieldLoss, AffinityFieldLoss
from cases import rel_err

FIXTURE = Path(__file__).parent / "fixtures" / "official_tf_cases.npz"
CASES = np.load(FIXTURE)
TOL = 2e-5  # float32 (TensorFlow) against float64 (aafcore)

pytestmark = pytest.mark.usefixtures("pair_backend")


def test_the_fixture_names_its_source():
    assert len(str(CASES["official_commit"])) == 40 and str(CASES["tensorflow"]).startswith("2.")
    assert int(CASES["cases"]) >= 3


@pytest.mark.parametrize("case", range(int(CASES["cases"])))
def test_aaf_matches_the_official_tensorflow_code(case):
    get = lambda key: torch.from_numpy(CASES[f"{case}/{key}"])  # noqa: E731
    logits = get("logits").double().requires_grad_()
    c = logits.shape[1]
    loss = AdaptiveAffinityFieldLoss(c, kernel_sizes=(3, 5, 7), margin=float(CASES["margin"])).double()
    with torch.no_grad():
        loss.edge_logits.copy_(get("edge_w"))
        loss.not_edge_logits.copy_(get("not_edge_w"))
    value = loss(logits, get("labels"))
    grads = torch.autograd.grad(value, [logits, loss.edge_logits, loss.not_edge_logits])
    assert abs(value.item() - float(CASES[f"{case}/aaf"])) < TOL * abs(float(CASES[f"{case}/aaf"]))
    for grad, key in zip(grads, ["aaf_grad_logits", "aaf_grad_edge_w", "aaf_grad_not_edge_w"]):
        ref = get(key).double()
        assert ref.abs().max() > 0, key
        assert rel_err(grad, ref) < TOL, key


@pytest.mark.parametrize("case", range(int(CASES["cases"])))
def test_affinity_matches_the_official_tensorflow_code(case):
    logits = torch.from_numpy(CASES[f"{case}/logits"]).double().requires_grad_()
    value = AffinityFieldLoss(logits.shape[1], margin=float(CASES["margin"]))(logits, torch.from_numpy(
        CASES[f"{case}/labels"]))
    (grad,) = torch.autograd.grad(value, logits)
    assert abs(value.item() - float(CASES[f"{case}/affinity"])) < TOL * abs(float(CASES[f"{case}/affinity"]))
    assert rel_err(grad, torch.from_numpy(CASES[f"{case}/affinity_grad_logits"]).double()) < TOL
