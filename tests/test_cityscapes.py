"""aafcore.datasets.cityscapes: the label table (against cityscapesScripts), the Cityscapes and GTA5 readers
on fixture trees in the real on-disk formats, and their errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from cityscapesscripts.helpers import labels as cs_labels
from PIL import Image

from aafcore.datasets import denormalize, normalize
from aafcore.datasets.cityscapes import (
    CITYSCAPES_CLASSES,
    CITYSCAPES_LABELS,
    CityscapesDataset,
    GTA5Dataset,
    cityscapes_palette,
    id_to_train_id_lut,
    map_label_ids,
)
from aafcore.testing import write_cityscapes_fixture, write_gta5_fixture

from checks import expect_one_line




def _reference_train_ids(ids: np.ndarray) -> np.ndarray:
    """Label ids -> train ids through cityscapesScripts' own table (255 / -1 / unknown -> 255)."""
    out = np.full(ids.shape, 255, np.uint8)
    for value in np.unique(ids):
        label = cs_labels.id2label.get(int(value))
        if label is not None and label.trainId not in (255, -1):
            out[ids == value] = label.trainId
    return out


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.array(im)


# --------------------------------------------------------------------------- label table


def test_label_table_matches_cityscapesscripts():
    assert len(CITYSCAPES_LABELS) == len(cs_labels.labels) == 35
    ours = {lab.name: lab for lab in CITYSCAPES_LABELS}
    for ref in cs_labels.labels:
        lab = ours[ref.name]
        assert (lab.id, lab.trainId, lab.name, lab.category, lab.categoryId) == \
            (ref.id, ref.trainId, ref.name, ref.category, ref.categoryId)
        assert (lab.hasInstances, lab.ignoreInEval) == (ref.hasInstances, ref.ignoreInEval), ref.name
        assert tuple(lab.color) == tuple(ref.color), ref.name
    assert [lab.name for lab in CITYSCAPES_LABELS] == [ref.name for ref in cs_labels.labels]


def test_lut_matches_cityscapesscripts():
    lut = id_to_train_id_lut()
    assert lut.dtype == np.uint8 and lut.shape == (256,)
    for i in range(256):
        ref = cs_labels.id2label.get(i)
        expected = 255 if ref is None or ref.trainId in (255, -1) else ref.trainId
        assert lut[i] == expected, i
    lut[7] = 99  # a fresh copy each call: mutating it changes nothing
    assert id_to_train_id_lut()[7] == 0


def test_classes_and_palette():
    assert list(CITYSCAPES_CLASSES) == [cs_labels.trainId2label[t].name for t in range(19)]
    assert CITYSCAPES_CLASSES[5] == "pole" and CITYSCAPES_CLASSES[18] == "bicycle"
    pal = cityscapes_palette()
    assert pal.dtype == np.uint8 and pal.shape == (256, 3)
    for t in range(19):
        assert tuple(pal[t]) == cs_labels.trainId2label[t].color
    assert not pal[19:].any()


def test_map_label_ids():
    ids = np.array([[7, 8, 17], [0, 24, 33], [34, 255, 18]], np.uint8)
    expected = np.array([[0, 1, 5], [255, 11, 18], [255, 255, 255]], np.uint8)
    out = map_label_ids(ids)
    assert out.dtype == np.uint8 and np.array_equal(out, expected)
    wide = np.array([-1, 26, 256, 1000, 23], np.int64)  # license plate, car, out of range, sky
    assert map_label_ids(wide).tolist() == [255, 13, 255, 255, 10]
    assert map_label_ids(np.arange(34, dtype=np.int32)).tolist() == \
        _reference_train_ids(np.arange(34)).tolist()
    expect_one_line(lambda: map_label_ids(np.zeros(3, np.float32)), "float32")


# --------------------------------------------------------------------------- Cityscapes


@pytest.fixture(scope="module")
def cs_root(tmp_path_factory) -> Path:
    """A Cityscapes fixture tree: 3 train, 2 val, 1 test images (read-only: copy to change it)."""
    return write_cityscapes_fixture(tmp_path_factory.mktemp("cs") / "cityscapes",
                                    {"train": 3, "val": 2, "test": 1}, size=(64, 128), seed=0)


def test_cityscapes_fixture_files(cs_root):
    gt = cs_root / "gtFine" / "train" / "aachen"
    stem = "aachen_000000_000019"
    assert (cs_root / "leftImg8bit" / "train" / "aachen" / f"{stem}_leftImg8bit.png").is_file()
    with Image.open(gt / f"{stem}_gtFine_labelIds.png") as im:
        assert im.mode == "L"
    with Image.open(gt / f"{stem}_gtFine_instanceIds.png") as im:
        assert im.mode.startswith("I") and np.array(im).max() >= 1000  # 16-bit greyscale
    with Image.open(gt / f"{stem}_gtFine_color.png") as im:
        assert im.mode == "RGBA"
    poly = (gt / f"{stem}_gtFine_polygons.json").read_text()
    assert '"imgHeight": 64' in poly and '"pole"' in poly
    assert sorted(p.name for p in (cs_root / "leftImg8bit" / "train").iterdir()) == ["aachen", "bremen"]


def test_cityscapes_protocol(cs_root):
    ds = CityscapesDataset(cs_root, "train")
    assert ds.ids == ["aachen_000000_000019", "aachen_000001_000019", "bremen_000000_000019"]
    assert len(ds) == 3 and ds.split == "train" and ds.root == cs_root
    assert ds.class_names == list(CITYSCAPES_CLASSES) and ds.num_classes == 19 and ds.ignore_index == 255
    assert ds.meta is None and ds.has_instances is True
    assert np.array_equal(ds.palette, cityscapes_palette())
    assert "CityscapesDataset" in repr(ds) and "'train'" in repr(ds) and "images=3" in repr(ds)
    assert CityscapesDataset(cs_root, "val").ids == ["frankfurt_000000_000019", "lindau_000000_000019"]
    assert len(CityscapesDataset(cs_root, "test")) == 1

    item = ds[1]
    assert set(item) == {"image", "label", "instance", "id"} and item["id"] == ds.ids[1]
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 64, 128)
    assert item["label"].dtype == torch.int64 and item["label"].shape == (64, 128)
    assert item["instance"].dtype == torch.int64 and item["instance"].shape == (64, 128)
    picture = _png(cs_root / "leftImg8bit" / "train" / "aachen" / f"{ds.ids[1]}_leftImg8bit.png")
    assert torch.equal(item["image"], normalize(picture))
    assert np.array_equal(denormalize(item["image"]), picture)
    assert ds[-1]["id"] == ds.ids[2]
    with pytest.raises(IndexError):
        ds[3]
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert batch["label"].shape == (3, 64, 128) and batch["id"] == ds.ids


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_cityscapes_labels_and_instances(cs_root, split):
    ds = CityscapesDataset(cs_root, split)
    for i, ident in enumerate(ds.ids):
        gt = cs_root / "gtFine" / split / ident.split("_")[0]
        ids = _png(gt / f"{ident}_gtFine_labelIds.png")
        raw = _png(gt / f"{ident}_gtFine_instanceIds.png").astype(np.int64)
        image, label, instance = ds.load_raw(i)
        assert image.dtype == np.uint8 and image.shape == (64, 128, 3)
        assert label.dtype == np.uint8 and instance.dtype == np.int64
        assert np.array_equal(label, _reference_train_ids(ids))
        # void borders (unlabeled, ego vehicle, static, out of roi) are ignored
        for border in (label[0], label[-1], label[:, 0], label[:, -1]):
            assert (border == 255).all()
        assert {0, 1, 3, 4} <= set(np.unique(ids).tolist())
        assert (label == 5).any() and (label == 11).any() and (label == 13).any()  # pole, person, car
        # instances: exactly where instanceIds >= 1000, the raw value, the object's class in it
        assert np.array_equal(instance != 0, raw >= 1000)
        assert np.array_equal(instance[raw >= 1000], raw[raw >= 1000])
        assert np.array_equal(instance[instance > 0] // 1000, ids[instance > 0])
        objects = set(np.unique(instance[instance > 0]).tolist())
        assert len({o for o in objects if o // 1000 == 24}) >= 2  # distinct persons stay distinct
        assert len({o for o in objects if o // 1000 == 26}) >= 2
        assert ((ids == 26) & (instance == 0)).any()  # a car group: car, but no instance
        assert ((label == 255) & (instance > 0)).any()  # a caravan: instance of an ignored class
        poles = label == 5
        assert poles.any() and not (poles[:, :-2] & poles[:, 1:-1] & poles[:, 2:]).any()  # <= 2 px wide


def test_cityscapes_transform_and_cache(cs_root, monkeypatch):
    def flip(item):
        return {**item, "label": item["label"].flip(-1), "flipped": True}

    plain = CityscapesDataset(cs_root, "val")
    ds = CityscapesDataset(cs_root, "val", transform=flip)
    item = ds[0]
    assert item["flipped"] is True and torch.equal(item["label"], plain[0]["label"].flip(-1))

    cached = CityscapesDataset(cs_root, "val", cache=True)
    first = cached.load_raw(0)
    assert cached.load_raw(0) is first
    assert plain.load_raw(0) is not plain.load_raw(0)
    for a, b in zip(first, plain.load_raw(0)):
        assert np.array_equal(a, b)


def test_cityscapes_missing_directories(cs_root, tmp_path):
    expect_one_line(lambda: CityscapesDataset(tmp_path / "nowhere", "train"), tmp_path / "nowhere")
    root = tmp_path / "cs"
    shutil.copytree(cs_root, root)
    shutil.rmtree(root / "gtFine" / "val")
    expect_one_line(lambda: CityscapesDataset(root, "val"), root / "gtFine" / "val")
    assert len(CityscapesDataset(root, "train")) == 3
    shutil.rmtree(root / "leftImg8bit")
    expect_one_line(lambda: CityscapesDataset(root, "train"), root / "leftImg8bit")
    (root / "leftImg8bit" / "train").mkdir(parents=True)
    expect_one_line(lambda: CityscapesDataset(root, "val"), root / "leftImg8bit" / "val")
    expect_one_line(lambda: CityscapesDataset(root, "train"), "no *_leftImg8bit.png images",
                  root / "leftImg8bit" / "train")


@pytest.mark.parametrize("split", ["train_extra", "Train", "", None])
def test_cityscapes_unknown_split(cs_root, split):
    expect_one_line(lambda: CityscapesDataset(cs_root, split), repr(split), "train, val, test")


def test_cityscapes_bad_files(cs_root, tmp_path):
    root = tmp_path / "cs"
    shutil.copytree(cs_root, root)
    gt = root / "gtFine" / "train" / "aachen"
    img = root / "leftImg8bit" / "train" / "aachen" / "aachen_000000_000019_leftImg8bit.png"
    lbl = gt / "aachen_000000_000019_gtFine_labelIds.png"
    inst = gt / "aachen_000000_000019_gtFine_instanceIds.png"

    lbl.rename(lbl.with_suffix(".bak"))
    expect_one_line(lambda: CityscapesDataset(root, "train"), lbl, img)
    lbl.with_suffix(".bak").rename(lbl)
    inst.rename(inst.with_suffix(".bak"))
    expect_one_line(lambda: CityscapesDataset(root, "train"), inst)
    inst.with_suffix(".bak").rename(inst)

    ds = CityscapesDataset(root, "train")
    Image.open(img).crop((0, 0, 120, 64)).save(img)  # image narrower than its label
    expect_one_line(lambda: ds.load_raw(0), img, lbl, "120x64", "128x64")
    shutil.copy(cs_root / img.relative_to(root), img)
    Image.open(lbl).convert("RGB").save(lbl)
    expect_one_line(lambda: ds.load_raw(0), lbl, "'RGB'")
    lbl.write_bytes(b"not a png")
    expect_one_line(lambda: ds.load_raw(0), "cannot read", lbl)
    shutil.copy(cs_root / lbl.relative_to(root), lbl)
    Image.open(inst).convert("L").save(inst)  # an 8-bit instance map cannot hold id * 1000 + k
    expect_one_line(lambda: ds.load_raw(0), inst, "16-bit")
    shutil.copy(cs_root / inst.relative_to(root), inst)
    ds.load_raw(0)

    (root / "leftImg8bit" / "train" / "stray.txt").write_text("x")  # torchvision's listing fails
    expect_one_line(lambda: CityscapesDataset(root, "train"), "cannot list", "stray.txt")


# --------------------------------------------------------------------------- GTA5


@pytest.fixture(scope="module")
def gta_roots(tmp_path_factory) -> dict[str, Path]:
    """GTA5 fixture trees with P, L and RGB labels: 00001..00003, 02500, 02501, 10000 (read-only)."""
    base = tmp_path_factory.mktemp("gta5")
    return {mode: write_gta5_fixture(base / mode, n=3, mode=mode, extra_ids=(2500, 2501, 10000))
            for mode in ("P", "L", "RGB")}


@pytest.mark.parametrize("mode", ["P", "L"])
def test_gta5_label_modes(gta_roots, mode):
    root = gta_roots[mode]
    ds = GTA5Dataset(root)
    assert ds.ids == ["00001", "00002", "00003", "02500", "02501", "10000"]
    assert ds.has_instances is False and ds.num_classes == 19 and ds.meta is None and ds.split == "all"
    for i, ident in enumerate(ds.ids):
        with Image.open(root / "labels" / f"{ident}.png") as im:
            assert im.mode == mode
            ids = np.array(im)
        image, label, instance = ds.load_raw(i)
        assert np.array_equal(label, _reference_train_ids(ids))
        assert (ids == 34).any() and (label[ids == 34] == 255).all()  # not a Cityscapes id
        assert (label == 5).any() and (label[0] == 255).all()
        assert image.shape == (52, 94, 3) and not instance.any() and instance.dtype == np.int64
    item = ds[0]
    assert item["label"].dtype == torch.int64 and item["instance"].shape == (52, 94)
    assert item["image"].shape == (3, 52, 94) and item["id"] == "00001"
    assert "GTA5Dataset" in repr(ds) and "images=6" in repr(ds)


def test_gta5_palette_and_greyscale_agree(gta_roots):
    p, grey = GTA5Dataset(gta_roots["P"]), GTA5Dataset(gta_roots["L"])
    for i in range(len(p)):
        for a, b in zip(p.load_raw(i), grey.load_raw(i)):
            assert np.array_equal(a, b)
    with Image.open(gta_roots["P"] / "labels" / "00001.png") as im:  # the palette colours the ids
        assert im.getpalette()[3 * 26: 3 * 27] == [0, 0, 142]


def test_gta5_rgb_labels_rejected(gta_roots):
    ds = GTA5Dataset(gta_roots["RGB"])  # listing does not decode labels
    path = gta_roots["RGB"] / "labels" / "00001.png"
    expect_one_line(lambda: ds.load_raw(0), path, "'RGB'", "colour labels")
    expect_one_line(lambda: ds[0], path)


def test_gta5_splits(gta_roots):
    root = gta_roots["P"]
    assert GTA5Dataset(root, "part1").ids == ["00001", "00002", "00003", "02500"]
    assert GTA5Dataset(root, "all").ids == GTA5Dataset(root).ids
    assert len(GTA5Dataset(root, "all")) == 6
    for split in ("train", "part2", None):
        expect_one_line(lambda: GTA5Dataset(root, split), repr(split), "all, part1")


def test_gta5_image_resized_to_label(gta_roots):
    root = gta_roots["P"]
    written = Image.open(root / "images" / "00002.png")
    assert (written.height, written.width) == (54, 94)  # 2 px taller than its label
    ds = GTA5Dataset(root, cache=True)
    image, label, _ = ds.load_raw(1)
    assert image.shape == (52, 94, 3) and label.shape == (52, 94)
    assert np.array_equal(image, np.array(written.convert("RGB").resize((94, 52), Image.BILINEAR)))
    assert np.array_equal(label, _reference_train_ids(_png(root / "labels" / "00002.png")))
    assert ds[1]["image"].shape == (3, 52, 94)
    assert ds.load_raw(1) is ds.load_raw(1)


def test_gta5_errors(gta_roots, tmp_path):
    expect_one_line(lambda: GTA5Dataset(tmp_path / "none"), tmp_path / "none")
    root = tmp_path / "gta"
    shutil.copytree(gta_roots["P"], root)
    missing = root / "labels" / "02501.png"
    missing.unlink()
    expect_one_line(lambda: GTA5Dataset(root), missing, root / "images" / "02501.png")
    assert len(GTA5Dataset(root, "part1")) == 4  # part1 does not need 02501
    shutil.rmtree(root / "labels")
    expect_one_line(lambda: GTA5Dataset(root), root / "labels")
    shutil.rmtree(root / "images")
    expect_one_line(lambda: GTA5Dataset(root), root / "images")
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    (empty / "labels").mkdir()
    expect_one_line(lambda: GTA5Dataset(empty), "no *.png images", empty / "images")


# --------------------------------------------------------------------------- fixture writers


def test_fixture_writers_are_deterministic_and_checked(tmp_path):
    a = write_cityscapes_fixture(tmp_path / "a", {"val": 2}, size=(32, 48), seed=3)
    b = write_cityscapes_fixture(tmp_path / "b", {"val": 2}, size=(32, 48), seed=3)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 10
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert len(CityscapesDataset(a, "val")) == 2
    for seed in range(6):  # the painter fits small images
        g = write_gta5_fixture(tmp_path / f"g{seed}", n=2, size=(32, 32), seed=seed, mode="L")
        assert GTA5Dataset(g).load_raw(1)[1].shape == (32, 32)
    with pytest.raises(ValueError, match="mode"):
        write_gta5_fixture(tmp_path / "x", mode="RGBA")
    with pytest.raises(ValueError, match="32x32"):
        write_cityscapes_fixture(tmp_path / "y", size=(16, 64))
    with pytest.raises(ValueError, match="train_extra"):
        write_cityscapes_fixture(tmp_path / "z", {"train_extra": 1})
