"""aafcore.datasets: the synthetic benchmark generator, the VOC-layout reader and TrainAugment."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from checks import tree_hashes

from aafcore.datasets import (
    MEAN,
    STD,
    SYNTHETIC_CLASSES,
    SYNTHETIC_PROFILES,
    VOC_CLASSES,
    DatasetError,
    SyntheticSpec,
    TrainAugment,
    build_dataset,
    denormalize,
    generate_synthetic,
    normalize,
    render_synthetic,
    synthetic_class_table,
    voc_colormap,
)

SMOKE = SYNTHETIC_PROFILES["smoke"]
TINY = SyntheticSpec(image_size=48, train=3, val=2, test=2, val_shifted=2, test_shifted=2, seed=0)




def _one_line(excinfo, *words):
    message = str(excinfo.value)
    assert "\n" not in message, message
    for word in words:
        assert str(word) in message, (word, message)


@pytest.fixture(scope="session")
def smoke_root(tmp_path_factory):
    return generate_synthetic(tmp_path_factory.mktemp("synth") / "smoke", "smoke")


# --------------------------------------------------------------------------- generator


def test_profiles_and_class_table():
    assert set(SYNTHETIC_PROFILES) == {"smoke", "cpu", "gpu", "study"}   # study: benchmark v2
    cpu = SYNTHETIC_PROFILES["cpu"]
    assert 96 <= cpu.image_size <= 160 and 600 <= cpu.train <= 1000
    assert 150 <= cpu.val <= 300 and 150 <= cpu.test <= 300
    assert cpu.val_shifted == cpu.val and cpu.test_shifted == cpu.test
    assert SYNTHETIC_PROFILES["gpu"].image_size > cpu.image_size
    assert 2 <= len(SYNTHETIC_CLASSES) <= 10
    groups = {c.group for c in SYNTHETIC_CLASSES}
    assert groups == {"thin", "large"}
    table = synthetic_class_table()
    assert [r["name"] for r in table] == [c.name for c in SYNTHETIC_CLASSES]
    assert all(r["width_px"] <= 3 for r in table if r["group"] == "thin")
    assert all(r["width_px"] >= 10 for r in table if r["group"] == "large")
    with pytest.raises(ValueError):
        SyntheticSpec(image_size=8)
    with pytest.raises(ValueError):
        SyntheticSpec(train=-1)


def test_generator_is_deterministic(tmp_path, smoke_root):
    again = generate_synthetic(tmp_path / "again", SMOKE)
    assert tree_hashes(again) == tree_hashes(smoke_root)
    # one image, rendered on its own, equals the file written within the whole generation
    _, label, instance = render_synthetic(SMOKE, "val", "shifted", 3)
    for sub, want in (("SegmentationClass", label), ("SegmentationObject", instance)):
        assert np.array_equal(np.array(Image.open(smoke_root / sub / "val_shifted_00003.png")), want)
    # another seed gives other scenes
    other = generate_synthetic(tmp_path / "other", SyntheticSpec(**{**SMOKE.__dict__, "seed": 1}))
    h0, h1 = tree_hashes(smoke_root), tree_hashes(other)
    assert h0.keys() == h1.keys()
    images = [k for k in h0 if k.startswith("JPEGImages")]
    assert all(h0[k] != h1[k] for k in images)


def test_generate_existing_root(tmp_path, smoke_root):
    assert generate_synthetic(smoke_root, "smoke") == smoke_root  # complete: returns at once
    with pytest.raises(DatasetError) as e:
        generate_synthetic(smoke_root, TINY)
    _one_line(e, str(smoke_root), "different")
    half = tmp_path / "half"
    (half / "JPEGImages").mkdir(parents=True)
    with pytest.raises(DatasetError) as e:
        generate_synthetic(half, TINY)
    _one_line(e, str(half), "meta.json")
    with pytest.raises(DatasetError) as e:
        generate_synthetic(tmp_path / "x", "nope")
    _one_line(e, "nope", "smoke")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (generate_synthetic(empty, TINY) / "meta.json").is_file()
    # written atomically: no temporary directory is left next to the datasets
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "half"]


def test_voc_layout(smoke_root):
    meta = json.loads((smoke_root / "meta.json").read_text())
    assert meta["class_names"] == [c.name for c in SYNTHETIC_CLASSES]
    assert meta["class_groups"] == [c.group for c in SYNTHETIC_CLASSES]
    assert len(meta["width_px"]) == len(meta["palette"]) == len(SYNTHETIC_CLASSES)
    assert meta["spec"] == SMOKE.__dict__ and meta["generator"] and meta["description"]
    expected = {"train": SMOKE.train, "val": SMOKE.val, "test": SMOKE.test,
                "val_shifted": SMOKE.val_shifted, "test_shifted": SMOKE.test_shifted}
    assert meta["splits"] == expected
    sets = smoke_root / "ImageSets" / "Segmentation"
    listed = set()
    for name, n in expected.items():
        ids = (sets / f"{name}.txt").read_text().split()
        assert len(ids) == len(set(ids)) == n
        listed |= set(ids)
    for sub, ext in (("JPEGImages", ".jpg"), ("SegmentationClass", ".png"), ("SegmentationObject", ".png")):
        assert {p.stem for p in (smoke_root / sub).iterdir()} == listed
        assert all(p.suffix == ext for p in (smoke_root / sub).iterdir())
    some = sorted(listed)[0]
    with Image.open(smoke_root / "JPEGImages" / f"{some}.jpg") as im:
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == (SMOKE.image_size,) * 2
    for sub in ("SegmentationClass", "SegmentationObject"):
        with Image.open(smoke_root / sub / f"{some}.png") as im:
            assert im.mode == "P" and im.getpalette() is not None
    with Image.open(smoke_root / "SegmentationClass" / f"{some}.png") as im:
        assert im.getpalette()[:3 * len(SYNTHETIC_CLASSES)] == [v for row in meta["palette"] for v in row]


def test_label_instance_consistency(smoke_root):
    names = [c.name for c in SYNTHETIC_CLASSES]
    stuff = [i for i, c in enumerate(SYNTHETIC_CLASSES) if c.stuff]
    things = [i for i, c in enumerate(SYNTHETIC_CLASSES) if not c.stuff]
    thin = [i for i, c in enumerate(SYNTHETIC_CLASSES) if c.group == "thin"]
    seen = np.zeros(len(names), bool)
    for path in sorted((smoke_root / "SegmentationClass").iterdir()):
        label = np.array(Image.open(path))
        instance = np.array(Image.open(smoke_root / "SegmentationObject" / path.name))
        assert label.max() < len(names)  # the generator draws no void
        seen[np.unique(label)] = True
        assert (instance[np.isin(label, stuff)] == 0).all(), path.name
        assert (instance[np.isin(label, things)] > 0).all(), path.name  # every thing pixel has an instance
        ids = np.unique(instance[instance > 0])
        assert ids.max(initial=0) < 255
        for k in ids:  # an instance is one connected object of one thing class
            classes = np.unique(label[instance == k])
            assert len(classes) == 1 and classes[0] in things, (path.name, k, classes)
    assert seen.all(), [n for n, s in zip(names, seen) if not s]
    assert any(seen[c] for c in thin)


def test_shifted_domain_differs_in_appearance_only():
    spec = SyntheticSpec(image_size=64, train=0, val=40, test=0, val_shifted=40, test_shifted=0)
    stats = {}
    for domain in ("source", "shifted"):
        imgs, fracs = [], []
        for i in range(40):
            image, label, _ = render_synthetic(spec, "val", domain, i)
            imgs.append(image.reshape(-1, 3).astype(float))
            fracs.append(np.bincount(label.ravel(), minlength=len(SYNTHETIC_CLASSES)) / label.size)
        pix = np.concatenate(imgs)
        sat = (pix.max(1) - pix.min(1)).mean()
        stats[domain] = (sat, np.mean(fracs, 0))
    assert stats["shifted"][0] < 0.85 * stats["source"][0]  # less saturated
    assert np.abs(stats["shifted"][1] - stats["source"][1]).max() < 0.08  # same kind of geometry


# --------------------------------------------------------------------------- reader


def _write_voc(root, n=3, size=(20, 16), num_classes=21, seed=0):
    """A tiny VOC-format tree; returns {id: (image uint8, label, instance)}."""
    rng = np.random.default_rng(seed)
    for sub in ("JPEGImages", "SegmentationClass", "SegmentationObject", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    w, h = size
    data = {}
    for i in range(n):
        ident = f"2007_{i:06d}"
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        label = rng.integers(0, num_classes, (h, w)).astype(np.uint8)
        label[0, :] = 255
        instance = rng.integers(0, 4, (h, w)).astype(np.uint8)
        instance[0, :] = 255
        Image.fromarray(image).save(root / "JPEGImages" / f"{ident}.jpg", quality=95)
        for arr, sub in ((label, "SegmentationClass"), (instance, "SegmentationObject")):
            im = Image.fromarray(arr).convert("P")
            im.putpalette(voc_colormap().reshape(-1).tolist())
            im.save(root / sub / f"{ident}.png")
        data[ident] = (image, label, instance)
    for split in ("train", "val"):
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("".join(f"{k}\n" for k in data))
    return data


def test_voc_reader(tmp_path):
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    data = _write_voc(voc)
    for root in (tmp_path, voc):
        ds = build_dataset("voc", root, split="val")
        assert len(ds) == 3 and ds.ids == list(data) and ds.num_classes == 21
        assert ds.class_names == list(VOC_CLASSES) and ds.ignore_index == 255
        for i, (ident, (image, label, instance)) in enumerate(data.items()):
            item = ds[i]
            assert item["id"] == ident
            assert item["image"].shape == (3, 16, 20) and item["image"].dtype == torch.float32
            assert torch.equal(item["label"], torch.from_numpy(label.astype(np.int64)))
            want = instance.astype(np.int64)
            want[want == 255] = 0
            assert torch.equal(item["instance"], torch.from_numpy(want))
            jpeg = np.array(Image.open(voc / "JPEGImages" / f"{ident}.jpg").convert("RGB"))
            assert np.array_equal(denormalize(item["image"]), jpeg)
    with pytest.raises(DatasetError) as e:
        build_dataset("voc", tmp_path, domain="shifted")
    _one_line(e, "shifted")


def test_synthetic_reader(smoke_root):
    ds = build_dataset("synthetic", smoke_root, split="train")
    assert len(ds) == SMOKE.train and ds.num_classes == len(SYNTHETIC_CLASSES)
    assert ds.class_names == [c.name for c in SYNTHETIC_CLASSES] and ds.meta["spec"] == SMOKE.__dict__
    item = ds[1]
    s = SMOKE.image_size
    assert set(item) == {"image", "label", "instance", "id"} and item["id"] == ds.ids[1] == "train_00001"
    assert item["image"].shape == (3, s, s) and item["image"].dtype == torch.float32
    assert item["label"].shape == item["instance"].shape == (s, s)
    assert item["label"].dtype == item["instance"].dtype == torch.int64
    assert int(item["label"].max()) < ds.num_classes
    raw = np.array(Image.open(smoke_root / "JPEGImages" / "train_00001.jpg"))
    expect = (torch.from_numpy(raw).permute(2, 0, 1).float() / 255 - torch.tensor(MEAN).view(3, 1, 1)) \
        / torch.tensor(STD).view(3, 1, 1)
    assert torch.allclose(item["image"], expect, atol=1e-5)
    assert np.array_equal(denormalize(item["image"]), raw)
    assert np.array_equal(denormalize(normalize(raw)), raw)
    # the cache hands out fresh tensors: changing an item does not change the dataset
    item["label"].fill_(3)
    item["image"].zero_()
    again = ds[1]
    assert not torch.equal(again["label"], item["label"])
    assert torch.allclose(again["image"], expect, atol=1e-5)
    shifted = build_dataset("synthetic", smoke_root, split="test", domain="shifted")
    assert len(shifted) == SMOKE.test_shifted and shifted[0]["id"].startswith("test_shifted_")
    marked = build_dataset("synthetic", smoke_root, split="val", transform=lambda it: {**it, "seen": True})
    assert marked[0]["seen"]


def test_unknown_dataset(tmp_path, smoke_root):
    # the real datasets name the directory they expected under an empty root
    for name, split, missing in (("cityscapes", "val", "leftImg8bit"), ("gta5", "all", "images"),
                                 ("voc_aug", "train_aug", "VOCdevkit")):
        with pytest.raises(DatasetError) as e:
            build_dataset(name, tmp_path, split=split)
        _one_line(e, tmp_path, missing)
    with pytest.raises(ValueError) as e:
        build_dataset("imagenet", tmp_path)
    _one_line(e, "unknown dataset", "imagenet", "cityscapes", "gta5")
    with pytest.raises(DatasetError) as e:
        build_dataset("synthetic", smoke_root, domain="night")
    _one_line(e, "night")


# --------------------------------------------------------------------------- bad input


def test_missing_root_and_split(tmp_path, smoke_root):
    for name in ("synthetic", "voc"):
        with pytest.raises(DatasetError) as e:
            build_dataset(name, tmp_path / "nowhere")
        _one_line(e, tmp_path / "nowhere")
    with pytest.raises(DatasetError) as e:
        build_dataset("synthetic", smoke_root, split="train", domain="shifted")
    _one_line(e, "train_shifted.txt")
    with pytest.raises(DatasetError) as e:
        build_dataset("synthetic", tmp_path)  # a directory that holds no dataset
    _one_line(e, "meta.json")


def test_empty_split_and_missing_file(tmp_path):
    data = _write_voc(tmp_path)
    (tmp_path / "ImageSets" / "Segmentation" / "val.txt").write_text("\n")
    with pytest.raises(DatasetError) as e:
        build_dataset("voc", tmp_path, split="val")
    _one_line(e, "val.txt", "no images")
    ident = next(iter(data))
    (tmp_path / "SegmentationClass" / f"{ident}.png").unlink()
    with pytest.raises(DatasetError) as e:
        build_dataset("voc", tmp_path, split="train")
    _one_line(e, f"{ident}.png")


def test_label_out_of_range(tmp_path):
    data = _write_voc(tmp_path)
    ident = list(data)[1]
    label = data[ident][1].copy()
    label[5, 5] = 40
    Image.fromarray(label).save(tmp_path / "SegmentationClass" / f"{ident}.png")
    ds = build_dataset("voc", tmp_path, split="train")
    ds[0]
    with pytest.raises(DatasetError) as e:
        ds[1]
    _one_line(e, f"{ident}.png", "40")


def test_truncated_image(tmp_path):
    data = _write_voc(tmp_path, size=(64, 48))
    ident = list(data)[2]
    path = tmp_path / "JPEGImages" / f"{ident}.jpg"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetError) as e:
        build_dataset("voc", tmp_path, split="val")[2]
    _one_line(e, f"{ident}.jpg")
    path.write_bytes(b"not a jpeg at all")
    with pytest.raises(DatasetError) as e:
        build_dataset("voc", tmp_path, split="val")[2]
    _one_line(e, f"{ident}.jpg")


def test_size_mismatch(tmp_path):
    data = _write_voc(tmp_path)
    ident = list(data)[0]
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(tmp_path / "SegmentationClass" / f"{ident}.png")
    with pytest.raises(DatasetError) as e:
        build_dataset("voc", tmp_path, split="val")[0]
    _one_line(e, ident, f"{ident}.png", "20x16", "12x10")


def test_synthetic_tree_with_broken_file(tmp_path, smoke_root):
    root = tmp_path / "copy"
    shutil.copytree(smoke_root, root)
    path = root / "SegmentationClass" / "val_00002.png"
    path.write_bytes(path.read_bytes()[:40])
    ds = build_dataset("synthetic", root, split="val")
    with pytest.raises(DatasetError) as e:
        ds[2]
    _one_line(e, "val_00002.png")


# --------------------------------------------------------------------------- augmentation


def _coded_item(h=40, w=52, block=8, seed=0):
    """Label of large blocks; instance = block number; image channels = (label code, row, col)."""
    g = np.random.default_rng(seed)
    by, bx = -(-h // block), -(-w // block)
    blocks = np.arange(by * bx).reshape(by, bx)
    inst = np.kron(blocks, np.ones((block, block), np.int64))[:h, :w] + 1
    lut = g.integers(0, 7, inst.max() + 1)
    lut[g.random(len(lut)) < 0.1] = 255
    label = lut[inst]
    image = np.stack([np.where(label == 255, -1.0, label / 10.0),
                      np.arange(h)[:, None].repeat(w, 1), np.arange(w)[None].repeat(h, 0)]).astype(np.float32)
    return {"image": torch.from_numpy(image), "label": torch.from_numpy(label),
            "instance": torch.from_numpy(inst), "id": "x"}, lut


def test_augment_exact_alignment_at_scale_one():
    item, _ = _coded_item()
    aug = TrainAugment(32, scale_range=(1.0, 1.0))
    flips = set()
    for seed in range(30):
        out = aug(item, torch.Generator().manual_seed(seed))
        assert out["image"].shape == (3, 32, 32) and out["label"].shape == out["instance"].shape == (32, 32)
        assert out["label"].dtype == torch.int64 and out["id"] == "x"
        rows, cols = out["image"][1].round().long(), out["image"][2].round().long()
        assert torch.equal(out["label"], item["label"][rows, cols])
        assert torch.equal(out["instance"], item["instance"][rows, cols])
        assert torch.equal(out["image"], item["image"][:, rows, cols])
        flips.add(bool(cols[0, 0] > cols[0, -1]))
    assert flips == {True, False}  # mirrored sometimes, not always
    no_mirror = TrainAugment(32, scale_range=(1.0, 1.0), mirror=False)
    for seed in range(10):
        cols = no_mirror(item, torch.Generator().manual_seed(seed))["image"][2]
        assert (cols[:, 1:] > cols[:, :-1]).all()


@pytest.mark.parametrize("scale_range", [(0.5, 0.5), (0.5, 2.0), (1.7, 1.7)])
def test_augment_alignment_at_other_scales(scale_range):
    item, lut = _coded_item(h=60, w=70, block=12)
    aug = TrainAugment(36, scale_range=scale_range)
    lut_t = torch.from_numpy(lut)
    checked = 0
    for seed in range(20):
        out = aug(item, torch.Generator().manual_seed(seed))
        label, inst, code = out["label"], out["instance"], out["image"][0]
        pad = inst == 0
        assert (label[pad] == 255).all() and (out["image"][:, pad] == 0).all()
        assert torch.equal(label[~pad], lut_t[inst[~pad]])  # label and instance stay aligned (both nearest)
        # block interiors (same block over a 3x3 window; bilinear taps then lie in that block
        # for scales in [0.5, 2]): the image encodes the label exactly
        p = torch.nn.functional.pad(inst[None, None].float(), (1, 1, 1, 1), value=-1)
        win = torch.nn.functional.unfold(p, 3)[0].view(9, *inst.shape)
        interior = (win == inst.float()).all(0) & ~pad & (label != 255)
        assert torch.allclose(code[interior], label[interior].float() / 10, atol=1e-5)
        checked += int(interior.sum())
    assert checked > 1000


def test_augment_padding_size_and_determinism():
    item, _ = _coded_item(h=20, w=24)
    aug = TrainAugment(48, scale_range=(0.5, 1.5))
    seen_pad = False
    outs = []
    for seed in range(10):
        out = aug(item, torch.Generator().manual_seed(seed))
        assert out["image"].shape == (3, 48, 48) and out["label"].shape == (48, 48)
        pad = out["instance"] == 0
        seen_pad |= bool(pad.any())
        assert (out["label"][pad] == 255).all() and (out["image"][:, pad] == 0).all()
        same = aug(item, torch.Generator().manual_seed(seed))
        for key in ("image", "label", "instance"):
            assert torch.equal(out[key], same[key])
        outs.append(out)
    assert seen_pad
    assert any(not torch.equal(outs[0]["label"], o["label"]) for o in outs[1:])
    # the input item is left as it was, and an item without instance map works
    fresh, _ = _coded_item(h=20, w=24)
    for key in ("image", "label", "instance"):
        assert torch.equal(item[key], fresh[key])
    small = aug({"image": item["image"], "label": item["label"]}, torch.Generator().manual_seed(0))
    assert "instance" not in small and small["label"].shape == (48, 48)


def test_augment_on_dataset_batches(smoke_root):
    aug = TrainAugment(48)
    ds = build_dataset("synthetic", smoke_root, split="train", transform=aug)
    batch = torch.utils.data.default_collate([ds[i] for i in range(4)])
    assert batch["image"].shape == (4, 3, 48, 48) and batch["label"].shape == (4, 48, 48)
    with pytest.raises(ValueError):
        TrainAugment(0)
    with pytest.raises(ValueError):
        TrainAugment(32, scale_range=(2.0, 1.0))
