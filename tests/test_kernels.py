"""The fused CPU kernel of the AAF pair sums (backend "cpp", aafcore/kernels): it builds here,
agrees with the torch backend at float32 and float64 on every kind of label map, splits images
among threads without changing a bit, and fails or falls back with one-line messages.  (Its
agreement with the float64 oracle is tested in test_aaf_oracle.py and test_aaf_properties.py,
which run on both backends.)"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from aafcore.kernels import cpu
from aafcore.losses import AdaptiveAffinityFieldLoss, AffinityFieldLoss, adaptive_affinity_field_loss
from aafcore.pairs import _flat, _PairKL
from cases import random_case, rel_err


def test_the_kernel_builds_on_this_machine():
    """CI and every supported machine have a C++ compiler: the default CPU backend is the kernel."""
    assert cpu.build_error() is None, cpu.build_error()
    assert cpu.available()


def _sums(backend, logits, labels, sizes, by_channel, weights):
    p = logits.softmax(1)
    if backend == "torch":
        out = _PairKL.apply(p, labels, sizes, 3.0, by_channel, 255)
    else:
        out = cpu.PairKLCpp.apply(p, labels, _flat(*labels.shape[-2:], sizes, p.device), 3.0, by_channel, 255)
    (grad,) = torch.autograd.grad((out[0] * weights[0]).sum() + (out[1] * weights[1]).sum(), logits)
    return [t.detach() for t in out], grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("by_channel", [False, True])
@pytest.mark.parametrize("kind", ["blocks", "noise", "one-class", "all-ignored"])
def test_kernel_matches_the_torch_backend(dtype, by_channel, kind):
    n, c, h, w = 3, 7, 23, 19
    sizes = (1, 2, 3)
    logits, blocks = random_case(n, c, h, w, seed=5, dtype=dtype)
    labels = {"blocks": blocks, "noise": torch.randint(0, c, (n, h, w), generator=torch.Generator().manual_seed(1)),
              "one-class": torch.full((n, h, w), 2), "all-ignored": torch.full((n, h, w), 255)}[kind]
    g = torch.Generator().manual_seed(9)
    weights = (torch.randn(3, c, generator=g, dtype=dtype), torch.randn(3, c, generator=g, dtype=dtype))
    ref, ref_grad = _sums("torch", logits, labels, sizes, by_channel, weights)
    out, grad = _sums("cpp", logits, labels, sizes, by_channel, weights)
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    assert torch.equal(out[2], ref[2]) and torch.equal(out[3], ref[3])  # the counts, exactly
    for a, b in [(out[0], ref[0]), (out[1], ref[1]), (grad, ref_grad)]:
        assert a.dtype == b.dtype
        if b.abs().max() == 0:
            assert a.abs().max() == 0
        else:
            assert rel_err(a, b) < tol


def test_threads_do_not_change_a_bit():
    """Images are split among threads; each image's sums are added in a fixed order, so the
    kernel's outputs and its gradient in p are the same bits on 1, 2 or 3 threads."""
    logits, labels = random_case(5, 6, 17, 21, seed=3, dtype=torch.float32)
    p = logits.detach().softmax(1)
    grid = _flat(17, 21, (1, 2, 3), p.device)
    weights = torch.randn(2, 3, 6, generator=torch.Generator().manual_seed(0))
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            x = p.clone().requires_grad_()
            out = cpu.PairKLCpp.apply(x, labels, grid, 3.0, False, 255)
            ((out[0] * weights[0]).sum() + (out[1] * weights[1]).sum()).backward()
            results.append([t.detach() for t in out] + [x.grad])
    finally:
        torch.set_num_threads(before)
    for result in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(result, results[0]))


def test_non_contiguous_inputs_and_int32_labels():
    logits, labels = random_case(2, 5, 16, 14, seed=8)
    ref = AdaptiveAffinityFieldLoss(5, backend="torch").double()(logits, labels)
    channels_last = logits.detach().to(memory_format=torch.channels_last)
    value = AdaptiveAffinityFieldLoss(5, backend="cpp").double()(channels_last, labels.int().transpose(1, 2).contiguous().transpose(1, 2))
    assert rel_err(value.detach(), ref.detach()) < 1e-12


def test_unknown_backend_is_a_one_line_error():
    for make in (lambda: AdaptiveAffinityFieldLoss(4, backend="cuda"),
                 lambda: AffinityFieldLoss(4, backend=None),
                 lambda: adaptive_affinity_field_loss(torch.randn(1, 4, 8, 8), torch.zeros(1, 8, 8, dtype=torch.long),
                                                      torch.zeros(4, 3), torch.zeros(4, 3), backend="fast")):
        with pytest.raises(ValueError) as err:
            make()
        assert "\n" not in str(err.value) and "backend must be one of" in str(err.value)


def _in_subprocess(code: str, tmp_path, cxx: str):
    env = {"PATH": "/usr/bin:/bin", "CXX": cxx, "AAF_KERNEL_CACHE": str(tmp_path / "cache"), "HOME": str(tmp_path)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          cwd=str(tmp_path))


def test_without_a_compiler_auto_falls_back_and_cpp_says_why(tmp_path):
    """No compiler: "auto" warns once and uses the torch backend (same value); "cpp" raises."""
    code = """
        import sys, warnings; sys.path[:0] = [%r, %r]
        import torch
        from aafcore.losses import AdaptiveAffinityFieldLoss
        from cases import random_case
        logits, labels = random_case(2, 4, 12, 12, seed=1)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            a = AdaptiveAffinityFieldLoss(4).double()(logits, labels)
            AdaptiveAffinityFieldLoss(4).double()(logits, labels)
        b = AdaptiveAffinityFieldLoss(4, backend="torch").double()(logits, labels)
        print(len([w for w in caught if "fused CPU kernel" in str(w.message)]), bool(a == b))
        try:
            AdaptiveAffinityFieldLoss(4, backend="cpp")(logits, labels)
        except RuntimeError as err:
            print("ERR", err)
    """ % (str(cpu.SOURCE.parents[2]), str(cpu.SOURCE.parents[2] / "tests"))
    proc = _in_subprocess(code, tmp_path, "no-such-compiler")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "1 True"
    assert lines[1].startswith("ERR AdaptiveAffinityFieldLoss") or lines[1].startswith("ERR pair_kl_sums")
    assert "no C++ compiler" in lines[1] and "no-such-compiler" in lines[1]


def test_a_failing_compiler_leaves_no_library_behind(tmp_path):
    """A compiler that fails: the reason names the compiler and the source, and the cache holds no
    half-written library."""
    fake = tmp_path / "fakecxx"
    fake.write_text("#!/bin/sh\necho 'fatal error: something broke' >&2\nexit 1\n")
    fake.chmod(0o755)
    code = """
        import sys; sys.path[:0] = [%r]
        from aafcore.kernels import cpu
        print(cpu.build_error())
    """ % str(cpu.SOURCE.parents[2])
    proc = _in_subprocess(code, tmp_path, str(fake))
    assert proc.returncode == 0, proc.stderr
    assert "fakecxx failed on pairkl.cpp: fatal error: something broke" in proc.stdout
    assert not list((tmp_path / "cache").glob("**/*.so"))



def test_an_unwritable_cache_falls_back_to_the_temporary_folder(tmp_path):
    """$AAF_KERNEL_CACHE that cannot be a folder (here a file): the kernel is built in $TMPDIR."""
    (tmp_path / "not-a-folder").write_text("")
    code = """
        import sys; sys.path[:0] = [%r]
        from aafcore.kernels import cpu
        print(cpu.build_error())
    """ % str(cpu.SOURCE.parents[2])
    env = {"PATH": "/usr/bin:/bin", "AAF_KERNEL_CACHE": str(tmp_path / "not-a-folder"), "HOME": str(tmp_path),
           "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "None"
    assert list((tmp_path / "tmp").glob("aafcore-*/pairkl-*.so"))
