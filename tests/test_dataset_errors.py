"""Hostile dataset files give one-line DatasetErrors naming the file (issue 13, cases 2-5).

* an image or label over :data:`aafcore.datasets.base.MAX_IMAGE_PIXELS` is refused from its
  header, before a pixel is decoded (a real 12000x12000 PNG of a few KB);
* a truncated or garbage SBD ``.mat`` (whatever scipy raises on it) and a ``.mat`` whose map is
  empty, fractional or out of range;
* a corrupt, empty, truncated image or label, and a directory where a file should be;
* the synthetic generator removes the temporary folders of killed generators (never a live one's),
  and ``aaf data synthetic`` stopped with SIGTERM exits 143 without leaving one.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import ImageFile
from scipy.io import savemat

import aafcore.datasets.base as base
from aafcore.datasets import build_dataset, generate_synthetic
from aafcore.datasets.voc import read_sbd_mat
from aafcore.testing import write_blank_png, write_cityscapes_fixture, write_gta5_fixture, write_voc_fixture
from checks import expect_one_line

ROOT = Path(__file__).resolve().parent.parent




@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> dict[str, Path]:
    """Pristine VOC + SBD, Cityscapes and GTA5 fixture trees (read-only: copy them to change files)."""
    base_dir = tmp_path_factory.mktemp("pristine")
    write_voc_fixture(base_dir / "voc")
    write_cityscapes_fixture(base_dir / "cityscapes", {"train": 1}, size=(32, 48))
    write_gta5_fixture(base_dir / "gta5", n=1, size=(40, 60))
    return {"voc": base_dir / "voc", "cityscapes": base_dir / "cityscapes", "gta5": base_dir / "gta5"}


@pytest.fixture
def voc(trees, tmp_path) -> Path:
    """A writable copy of the VOC + SBD tree."""
    root = tmp_path / "voc"
    shutil.copytree(trees["voc"], root)
    return root


def _voc_file(root: Path, sub: str, ident: str = "2007_000032") -> Path:
    suffix = ".jpg" if sub == "JPEGImages" else ".png"
    return root / "VOCdevkit" / "VOC2012" / sub / f"{ident}{suffix}"


# --------------------------------------------------------------------------- case 2: the size limit


def test_the_limit_is_documented_and_above_the_real_data():
    assert base.MAX_IMAGE_PIXELS == 50_000_000
    assert 2048 * 1024 < base.MAX_IMAGE_PIXELS   # a Cityscapes frame, 2 Mpixel
    assert "2048x1024" in base.__doc__ or "2048x1024" in Path(base.__file__).read_text()


@pytest.mark.parametrize("sub", ["SegmentationClass", "JPEGImages", "SegmentationObject"])
def test_a_12000x12000_png_is_refused_before_decoding(voc, sub, monkeypatch):
    """A real 12000x12000 PNG (a few KB on disk, 144 MB decoded) in a VOC tree: refused from its
    header, no pixel decoded (``ImageFile.load`` never runs on it), no DecompressionBombWarning."""
    path = _voc_file(voc, sub)
    start = time.perf_counter()
    write_blank_png(path, 12000, 12000)
    assert path.stat().st_size < 100_000 and time.perf_counter() - start < 1.0
    loaded: list[str] = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load",
                        lambda self: loaded.append(str(getattr(self, "filename", ""))) or real_load(self))
    ds = build_dataset("voc", voc, split="train")
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # PIL's own bomb warning (144 > 89 Mpixel) must not fire
        error = expect_one_line(lambda: ds[0], f"image {path} is 12000x12000 (144.0 Mpixel), over the limit of "
                                               f"50 Mpixel (aafcore.datasets.base.MAX_IMAGE_PIXELS)")
    assert str(path) not in loaded
    assert error.startswith(f"image {path} is 12000x12000")
    ds[1]   # the other image of the split still reads


def test_the_limit_applies_to_every_reader(voc, trees, monkeypatch):
    """Lowered to one pixel under the fixtures' size, the limit stops VOC, SBD, Cityscapes and
    GTA5 reads, images and labels alike; at exactly their size it lets them through."""
    monkeypatch.setattr(base, "MAX_IMAGE_PIXELS", 60 * 80 - 1)
    voc_ds = build_dataset("voc", voc, split="train")
    expect_one_line(lambda: voc_ds[0], _voc_file(voc, "JPEGImages"), "80x60", "(aafcore.datasets.base.MAX_IMAGE")
    aug = build_dataset("voc_aug", voc, split="train_aug")
    sbd_only = aug.ids.index("2008_000002")   # its label is SBD's cls/2008_000002.mat
    expect_one_line(lambda: read_sbd_mat(voc / "benchmark_RELEASE" / "dataset" / "cls" / "2008_000002.mat"),
                    "2008_000002.mat", "80x60")
    monkeypatch.setattr(base, "MAX_IMAGE_PIXELS", 60 * 80)
    assert aug.load_raw(sbd_only)[1].shape == (60, 80)
    assert voc_ds[0]["label"].shape == (60, 80)

    monkeypatch.setattr(base, "MAX_IMAGE_PIXELS", 32 * 48 - 1)
    cs = build_dataset("cityscapes", trees["cityscapes"], split="train")
    expect_one_line(lambda: cs.load_raw(0), "_leftImg8bit.png is 48x32 (0.0 Mpixel)")
    gta = build_dataset("gta5", trees["gta5"], split="all")
    expect_one_line(lambda: gta.load_raw(0), trees["gta5"] / "labels" / "00001.png", "60x40")
    monkeypatch.setattr(base, "MAX_IMAGE_PIXELS", 40 * 60)
    assert cs.load_raw(0)[0].shape == (32, 48, 3) and gta.load_raw(0)[1].shape == (40, 60)


# --------------------------------------------------------------------------- case 3: corrupt SBD .mat


def _v73_header() -> bytes:
    """A MATLAB 7.3 (HDF5) header and nothing else: scipy refuses it with NotImplementedError."""
    return b"MATLAB 7.3 MAT-file".ljust(116) + bytes(8) + b"\x00\x02IM"


# name -> bytes from the real file ``good``; what scipy 1.17 raised on each is noted
MAT_VARIANTS = {
    "empty": lambda good: b"",                                       # MatReadError
    "random 50 bytes": lambda good: np.random.default_rng(0).bytes(50),   # IndexError
    "first 100 bytes": lambda good: good[:100],                      # IndexError
    "first 127 bytes": lambda good: good[:127],                      # TypeError (buffer too small)
    "header only": lambda good: good[:128],                          # loads: no GTcls struct
    "first 200 bytes": lambda good: good[:200],                      # OSError (could not read bytes)
    "half": lambda good: good[: len(good) // 2],                     # OSError
    "header and junk": lambda good: good[:128] + np.random.default_rng(1).bytes(300),   # TypeError
    "text": lambda good: b"not a mat file\n" * 20,                   # ValueError (unknown version)
    "v7.3 header": lambda good: _v73_header(),                       # NotImplementedError
}


@pytest.mark.parametrize("variant", list(MAT_VARIANTS))
def test_corrupt_sbd_mat_names_the_file(voc, variant):
    cls = voc / "benchmark_RELEASE" / "dataset" / "cls" / "2008_000002.mat"
    cls.write_bytes(MAT_VARIANTS[variant](cls.read_bytes()))
    expect_one_line(lambda: read_sbd_mat(cls), cls)
    aug = build_dataset("voc_aug", voc, split="train_aug")
    expect_one_line(lambda: aug[aug.ids.index("2008_000002")], cls)


@pytest.mark.parametrize("seg, needle", [
    (np.zeros((0, 5), np.uint8), "no 2-D"),
    (np.zeros((2, 2, 2), np.uint8), "no 2-D"),
    ("a string", "no 2-D"),
    (np.full((4, 4), np.nan), "outside the integers 0..255"),
    (np.full((4, 4), 1.5), "outside the integers 0..255"),
    (np.full((4, 4), 300, np.uint16), "outside the integers 0..255"),
    (np.full((4, 4), -1, np.int16), "outside the integers 0..255"),
    (np.ones((4, 4), complex), "complex128"),
])
def test_sbd_mat_with_a_bad_map_names_the_file(tmp_path, seg, needle):
    path = tmp_path / "bad.mat"
    savemat(path, {"GTcls": {"Segmentation": seg}})
    expect_one_line(lambda: read_sbd_mat(path), path, needle)
    savemat(path, {"GTinst": {"Segmentation": np.full((3, 4), 2.0)}})   # integral doubles are fine
    assert read_sbd_mat(path).tolist() == [[2] * 4] * 3


# --------------------------------------------------------------------------- case 4: corrupt images


def _corrupt(path: Path, how: str) -> None:
    if how == "garbage":
        path.write_bytes(np.random.default_rng(2).bytes(2000))
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[:60])
    elif how == "text":
        path.write_text("<html>404 not found</html>\n")
    elif how == "directory":
        path.unlink()
        path.mkdir()


@pytest.mark.parametrize("how", ["garbage", "empty", "truncated", "text", "directory"])
@pytest.mark.parametrize("sub", ["JPEGImages", "SegmentationClass", "SegmentationObject"])
def test_corrupt_voc_file_names_it(voc, sub, how):
    path = _voc_file(voc, sub)
    ds = build_dataset("voc", voc, split="train")
    _corrupt(path, how)
    expect_one_line(lambda: ds[0], "cannot read", path)
    if how == "directory":   # found at construction: a directory is not a file
        expect_one_line(lambda: build_dataset("voc", voc, split="train"), "is not a file", path)
    assert ds[1]["id"] == "2007_000039"


def _corrupt_then_restore(ds, path: Path, how: str) -> None:
    """Corrupt ``path`` (``how``), check that reading item 0 names it in one line, put it back."""
    backup = path.read_bytes()
    _corrupt(path, how)
    expect_one_line(lambda: ds.load_raw(0), "cannot read", path)
    if path.is_dir():
        path.rmdir()
    path.write_bytes(backup)


@pytest.mark.parametrize("how", ["garbage", "empty", "truncated", "directory"])
def test_corrupt_cityscapes_and_gta5_files_name_them(trees, tmp_path, how):
    cs = tmp_path / "cs"
    shutil.copytree(trees["cityscapes"], cs)
    ds = build_dataset("cityscapes", cs, split="train")
    image = next((cs / "leftImg8bit" / "train").rglob("*_leftImg8bit.png"))
    instance = next((cs / "gtFine" / "train").rglob("*_instanceIds.png"))
    for path in (image, instance):
        _corrupt_then_restore(ds, path, how)
    gta = tmp_path / "gta5"
    shutil.copytree(trees["gta5"], gta)
    ds = build_dataset("gta5", gta, split="all")
    for path in (gta / "labels" / "00001.png", gta / "images" / "00001.png"):
        _corrupt_then_restore(ds, path, how)
    assert ds.load_raw(0)[1].shape == (40, 60)


# --------------------------------------------------------------------------- case 5: stale temporary folders


def test_stale_temporary_folders_of_dead_generators_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen(["sleep", "30"])
    try:
        stale = tmp_path / f".d.{dead.pid}.tmp"
        (stale / "JPEGImages").mkdir(parents=True)
        (stale / "JPEGImages" / "x.jpg").write_bytes(b"half written")
        kept = [tmp_path / f".d.{live.pid}.tmp",   # a generator still running
                tmp_path / ".d.1.tmp",             # pid 1 always runs (PermissionError unless root)
                tmp_path / ".d.notapid.tmp",       # not a name we write
                tmp_path / f".e.{dead.pid}.tmp"]   # another dataset's folder
        for path in kept:
            (path / "JPEGImages").mkdir(parents=True)
        root = generate_synthetic(tmp_path / "d", "smoke")
        assert (root / "meta.json").is_file() and len(build_dataset("synthetic", root, split="val")) == 8
        assert not stale.exists()
        assert all((path / "JPEGImages").is_dir() for path in kept)
        assert live.poll() is None   # still running, folder untouched
    finally:
        live.kill()
        live.wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["d", *(p.name for p in kept)])


@pytest.mark.slow
def test_sigterm_during_generation_exits_143_and_leaves_no_temporary_folder(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "aafcore.cli", "data", "synthetic", "--profile", "cpu",
                             "--out", str(tmp_path / "d"), "--no-progress"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tmp = tmp_path / f".d.{proc.pid}.tmp"
    try:
        deadline = time.monotonic() + 120
        while not (tmp / "JPEGImages").is_dir() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert tmp.is_dir(), "the generator never made its temporary folder"
        time.sleep(0.3)   # let it write some images
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143, (proc.returncode, err)
    assert not tmp.exists() and not (tmp_path / "d").exists()
    assert os.listdir(tmp_path) == []
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "terminated" in lines[0], err
