"""Paths from split lists and split names never lead out of the dataset folder (issue 13, case 7).

A split-list id such as ``../../x`` once made the evaluator write a prediction over a label file
outside the run (ids are file names, of predictions too), and a split such as
``../../ImageSets/Segmentation/val`` named a list file anywhere.  Every id read from a list (VOC's
``ImageSets/Segmentation/*.txt``, SBD's ``train.txt`` / ``val.txt``) and every id made from a file
name (Cityscapes, GTA5) must be a plain name, and every split too, each refused with a one-line
:class:`DatasetError` that names the list file and line (or the split) before any file is read.
The fixtures are the real on-disk formats of :mod:`aafcore.testing`.
"""

from __future__ import annotations

import builtins
import shutil
from pathlib import Path

import pytest

from aafcore.datasets import DATASETS, VOCAugDataset, VOCLayoutDataset, build_dataset
from aafcore.datasets.cityscapes import CityscapesDataset, GTA5Dataset
from aafcore.datasets.voc import read_split_list
from aafcore.testing import write_cityscapes_fixture, write_gta5_fixture, write_voc_fixture

# ids and splits that are not plain names: separators, parent and current folder, empty, NUL
BAD_IDS = ["../../../../outside", "../outside", "sub/2007_000032", "..", ".", "a\\b", "/etc/passwd", "a\0b"]
BAD_SPLITS = ["../../ImageSets/Segmentation/val", "../Segmentation/val", "val/", "..", ".", "", "a\\b", "v\0al",
              "/abs/val"]

from checks import expect_one_line




def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """``{relative path: (size, mtime_ns)}`` of every file and folder under ``root``."""
    return {str(p.relative_to(root)): (p.stat().st_size if p.is_file() else -1, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> dict[str, Path]:
    """Pristine VOC + SBD, Cityscapes and GTA5 fixture trees (read-only: copy them to change files)."""
    base = tmp_path_factory.mktemp("pristine")
    write_voc_fixture(base / "voc")
    write_cityscapes_fixture(base / "cityscapes", {"train": 2, "val": 1}, size=(32, 48))
    write_gta5_fixture(base / "gta5", n=2, size=(32, 32))
    return {"voc": base / "voc", "cityscapes": base / "cityscapes", "gta5": base / "gta5"}


@pytest.fixture
def voc(trees, tmp_path) -> Path:
    """A copy of the VOC + SBD tree at ``tmp_path/data/voc``, with the files that the id
    ``../../../../outside`` reaches from ``JPEGImages/`` (``tmp_path/data/outside.*``): before the
    check, such an id was accepted because its files exist."""
    root = tmp_path / "data" / "voc"
    shutil.copytree(trees["voc"], root)
    voc2012 = root / "VOCdevkit" / "VOC2012"
    for suffix, source in ((".jpg", "JPEGImages/2007_000032.jpg"), (".png", "SegmentationClass/2007_000032.png")):
        shutil.copy(voc2012 / source, tmp_path / "data" / f"outside{suffix}")
    assert (voc2012 / "JPEGImages" / "../../../../outside.jpg").resolve() == tmp_path / "data" / "outside.jpg"
    return root


def _with_line(path: Path, bad: str, after: int = 1) -> int:
    """Insert ``bad`` into the list ``path`` after line ``after`` (a blank line first, so that the
    reported number counts physical lines); returns its line number."""
    lines = path.read_text().splitlines()
    lines[after:after] = ["", bad]
    path.write_text("\n".join(lines) + "\n")
    return after + 2


# --------------------------------------------------------------------------- ids in split lists


@pytest.mark.parametrize("bad", BAD_IDS)
def test_voc_list_id_outside_the_folder_is_refused(voc, tmp_path, bad):
    lists = voc / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation"
    line = _with_line(lists / "val.txt", bad)
    before = _snapshot(tmp_path)
    message = expect_one_line(lambda: build_dataset("voc", voc, split="val"),
                              lists / "val.txt", f"line {line}", repr(bad))
    assert "not a plain name" in message
    expect_one_line(lambda: VOCLayoutDataset(voc / "VOCdevkit" / "VOC2012", "val", ["a", "b"]),
                    lists / "val.txt", f"line {line}")
    expect_one_line(lambda: read_split_list(lists / "val.txt"), lists / "val.txt", f"line {line}", repr(bad))
    assert _snapshot(tmp_path) == before   # nothing written, nothing outside touched


@pytest.mark.parametrize("split", ["train", "val", "trainval"])
def test_voc_aug_refuses_bad_ids_in_each_voc_list(voc, tmp_path, split):
    lists = voc / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation"
    line = _with_line(lists / f"{split}.txt", "../../../../outside", after=0)
    before = _snapshot(tmp_path)
    expect_one_line(lambda: build_dataset("voc_aug", voc, split=split), lists / f"{split}.txt", f"line {line}",
                    "'../../../../outside'")
    if split != "trainval":   # train_aug reads VOC's train and val lists too
        expect_one_line(lambda: build_dataset("voc_aug", voc, split="train_aug"), lists / f"{split}.txt")
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("sbd_list", ["train.txt", "val.txt"])
def test_sbd_list_id_outside_the_folder_is_refused(voc, tmp_path, sbd_list):
    path = voc / "benchmark_RELEASE" / "dataset" / sbd_list
    line = _with_line(path, "../../cls/2008_000002", after=len(path.read_text().splitlines()))
    before = _snapshot(tmp_path)
    expect_one_line(lambda: build_dataset("voc_aug", voc, split="train_aug"), path, f"line {line}",
                    "'../../cls/2008_000002'")
    expect_one_line(lambda: VOCAugDataset(voc, "train_aug"), path, f"line {line}")
    assert _snapshot(tmp_path) == before


def test_good_ids_still_read(voc):
    """Ids like VOC's ``2007_000032`` (and names with dots or spaces, which stay inside the folder) pass."""
    lists = voc / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation"
    assert build_dataset("voc", voc, split="val").ids == ["2007_000033", "2007_000042"]
    assert "2008_000002" in build_dataset("voc_aug", voc, split="train_aug").ids
    (lists / "odd.txt").write_text("  2007_000032  \n\n2007_000039\r\n")
    assert read_split_list(lists / "odd.txt") == ["2007_000032", "2007_000039"]
    (lists / "dots.txt").write_text("a.b\n..x\nx..\nwith space\n")
    assert read_split_list(lists / "dots.txt") == ["a.b", "..x", "x..", "with space"]


def test_explicit_ids_are_checked_too(voc):
    root = voc / "VOCdevkit" / "VOC2012"
    expect_one_line(lambda: VOCLayoutDataset(root, "val", ["a"], ids=["2007_000033", "../../../../outside"]),
                    "'../../../../outside'", "split 'val'")
    assert VOCLayoutDataset(root, "val", ["a"] * 21, ids=["2007_000033"]).ids == ["2007_000033"]


def test_cityscapes_and_gta5_ids_from_file_names_are_plain(trees, tmp_path):
    """The ids of Cityscapes and GTA5 are file names: an image named ``_leftImg8bit.png`` (id ``""``)
    or ``..png`` (id ``.``) would name predictions ``.png`` / ``..png``: refused, naming the file."""
    cs = tmp_path / "cs"
    shutil.copytree(trees["cityscapes"], cs)
    city_img, city_gt = cs / "leftImg8bit" / "val" / "frankfurt", cs / "gtFine" / "val" / "frankfurt"
    stem = "frankfurt_000000_000019"
    shutil.copy(city_img / f"{stem}_leftImg8bit.png", city_img / "_leftImg8bit.png")
    for kind in ("labelIds", "instanceIds"):
        shutil.copy(city_gt / f"{stem}_gtFine_{kind}.png", city_gt / f"_gtFine_{kind}.png")
    expect_one_line(lambda: build_dataset("cityscapes", cs, split="val"), city_img / "_leftImg8bit.png", "''")
    assert len(build_dataset("cityscapes", cs, split="train")) == 2
    gta = tmp_path / "gta5"
    shutil.copytree(trees["gta5"], gta)
    for sub in ("images", "labels"):
        shutil.copy(gta / sub / "00001.png", gta / sub / "..png")
    expect_one_line(lambda: build_dataset("gta5", gta, split="all"), gta / "images" / "..png", "'.'")


# --------------------------------------------------------------------------- split names


@pytest.mark.parametrize("split", BAD_SPLITS)
def test_bad_split_is_refused_before_any_file_is_read(trees, tmp_path, split, monkeypatch):
    """``build_dataset`` refuses the split first: even on a root that does not exist, the error is
    about the split, and no file is opened on the way."""
    roots = {"synthetic": tmp_path, "voc": trees["voc"], "voc_aug": trees["voc"], **trees}
    opened: list[str] = []
    real_path_open, real_open = Path.open, builtins.open
    monkeypatch.setattr(Path, "open", lambda self, *a, **k: opened.append(str(self)) or real_path_open(self, *a, **k))
    monkeypatch.setattr(builtins, "open", lambda file, *a, **k: opened.append(str(file)) or real_open(file, *a, **k))
    for name in DATASETS:
        message = expect_one_line(lambda: build_dataset(name, tmp_path / "nowhere", split=split),
                                  f"{name} split {split!r}", "not a plain name")
        assert "nowhere" not in message
        expect_one_line(lambda: build_dataset(name, roots[name], split=split), f"{name} split {split!r}")
    monkeypatch.undo()
    assert opened == []


@pytest.mark.parametrize("split", BAD_SPLITS)
def test_bad_split_is_refused_by_each_reader(trees, split):
    voc2012 = trees["voc"] / "VOCdevkit" / "VOC2012"
    expect_one_line(lambda: VOCLayoutDataset(voc2012, split, ["a"] * 21), repr(split))
    expect_one_line(lambda: VOCAugDataset(trees["voc"], split), repr(split), "train_aug")
    expect_one_line(lambda: CityscapesDataset(trees["cityscapes"], split), repr(split), "train, val, test")
    expect_one_line(lambda: GTA5Dataset(trees["gta5"], split), repr(split), "all, part1")


def test_split_reaching_an_existing_list_is_refused(trees, tmp_path):
    """``../Segmentation/val`` resolves to the real ``val.txt`` (and ``../../leftImg8bit/val`` to a
    real folder): a path, not a split, refused although the file is there."""
    voc2012 = trees["voc"] / "VOCdevkit" / "VOC2012"
    assert (voc2012 / "ImageSets" / "Segmentation" / "../Segmentation/val.txt").is_file()
    expect_one_line(lambda: build_dataset("voc", trees["voc"], split="../Segmentation/val"),
                    "'../Segmentation/val'")
    expect_one_line(lambda: VOCLayoutDataset(voc2012, "../Segmentation/val", ["a"] * 21), "'../Segmentation/val'")
    assert (trees["cityscapes"] / "gtFine" / "../leftImg8bit/val").is_dir()
    expect_one_line(lambda: build_dataset("cityscapes", trees["cityscapes"], split="../leftImg8bit/val"),
                    "'../leftImg8bit/val'")


def test_synthetic_split_and_list_ids(smoke_data, tmp_path):
    root = tmp_path / "syn"
    shutil.copytree(smoke_data, root)
    expect_one_line(lambda: build_dataset("synthetic", root, split="../Segmentation/val"),
                    "synthetic split '../Segmentation/val'")
    expect_one_line(lambda: build_dataset("synthetic", root, split="../Segmentation/val", domain="shifted"),
                    "'../Segmentation/val'")
    listing = root / "ImageSets" / "Segmentation" / "val_shifted.txt"
    line = _with_line(listing, "../../JPEGImages/val_00000", after=3)
    expect_one_line(lambda: build_dataset("synthetic", root, split="val", domain="shifted"), listing,
                    f"line {line}", "'../../JPEGImages/val_00000'")
    assert len(build_dataset("synthetic", root, split="val")) == 8


# --------------------------------------------------------------------------- names from configs and the command line


def test_check_name_accepts_plain_names_only():
    from aafcore.errors import check_name

    for good in ("val", "train_aug", "2007_000032", "pspnet-aaf-k3_5-s0", "a.b"):
        assert check_name(good, "id") == good
    for bad in BAD_IDS + ["", None, 3]:
        with pytest.raises(ValueError, match="is not a plain name"):
            check_name(bad, "id")


def test_a_config_whose_names_lead_elsewhere_is_refused(tmp_path, capsys):
    import json

    from aafcore.cli import main
    from aafcore.config import TrainConfig

    for field in ("profile", "train_split", "val_split", "finetune_split"):
        for bad in ("../../../elsewhere", "a/b", ".."):
            with pytest.raises(ValueError, match=f"{field} .* is not a plain name"):
                TrainConfig(**{field: bad})
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"profile": "../../../elsewhere", "steps": 2}))
    before = sorted(p.name for p in tmp_path.parent.iterdir())
    assert main(["train", "--config", str(config), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(config) in err[0] and "not a plain name" in err[0], err
    assert sorted(p.name for p in tmp_path.parent.iterdir()) == before   # no run written elsewhere
    with pytest.raises(ValueError, match="unknown dataset"):
        TrainConfig(dataset="../voc")


def test_aaf_evaluate_refuses_a_split_that_leads_out_of_the_run(smoke_data, tmp_path, capsys):
    from aafcore.cli import main
    from aafcore.config import profile_config
    from aafcore.train import train

    run = tmp_path / "run"
    train(profile_config("smoke", steps=2), run, data_root=smoke_data, progress=False)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    for split in ("../../ImageSets/Segmentation/val", "../x", ".."):
        assert main(["evaluate", str(run), "--split", split, "--data-root", str(smoke_data), "--no-progress"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "not a plain name" in err[0], err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_a_prediction_is_never_written_outside_its_folder(tmp_path):
    import numpy as np
    import torch

    from aafcore.inference import evaluate_model
    from aafcore.models import build_model

    class Escaping(torch.utils.data.Dataset):   # a reader that lets a bad id through
        num_classes, ignore_index, class_names = 2, 255, ["a", "b"]
        palette = np.array([[0, 0, 0], [255, 255, 255]], np.uint8)

        def __len__(self):
            return 1

        def __getitem__(self, i):
            return {"image": torch.zeros(3, 32, 32), "label": torch.zeros(32, 32, dtype=torch.long),
                    "id": "../../escaped"}

    model = build_model("pspnet", "narrow", 2)
    with pytest.raises(ValueError, match="image id '../../escaped' is not a plain name"):
        evaluate_model(model, Escaping(), predictions_dir=tmp_path / "run" / "predictions")
    assert not list(tmp_path.rglob("escaped*"))
