"""aafcore.datasets as a package: the old import paths, the registry, class_groups, the import rules
of the package, and one test per object-kind drawing function of the synthetic scene."""

from __future__ import annotations

import ast
import hashlib
import importlib
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

import aafcore.datasets as datasets
import aafcore.testing as testing
from aafcore.datasets import (DATASET_BUILDERS, DATASETS, SYNTHETIC_PROFILES, build_dataset, class_groups,
                              render_synthetic)
from aafcore.datasets.scene import (ANIMAL, BUILDING, FENCE, GROUND, PERSON, POLE, SKY, SYNTHETIC_CLASSES, WHEEL,
                                    Canvas, Ground, draw_animal, draw_building, draw_fence, draw_person, draw_pole,
                                    draw_scene, draw_wheel)

PACKAGE = Path(datasets.__file__).resolve().parent
OLD_DATA_ALL = ["DatasetError", "MEAN", "STD", "IGNORE_INDEX", "normalize", "denormalize", "SyntheticClass",
                "SYNTHETIC_CLASSES", "synthetic_class_table", "synthetic_palette", "synthetic_meta", "SyntheticSpec",
                "SYNTHETIC_PROFILES", "GENERATOR_VERSION", "render_synthetic", "generate_synthetic", "VOC_CLASSES",
                "VOCLayoutDataset", "build_dataset", "DATASETS", "TrainAugment", "voc_colormap", "colorize"]


# --------------------------------------------------------------------------- old import paths


def _fresh_import(name: str, monkeypatch) -> tuple[object, list[warnings.WarningMessage]]:
    """Import ``name`` anew (its cached module is restored afterwards); returns it and the warnings."""
    monkeypatch.delitem(sys.modules, name, raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(name)
    return module, list(caught)


def test_aafcore_data_is_a_silent_alias(monkeypatch):
    from aafcore.data import DATASETS as OLD_DATASETS  # noqa: F401 - the import path users keep
    from aafcore.data import TrainAugment, VOCLayoutDataset, build_dataset, generate_synthetic  # noqa: F401

    data, caught = _fresh_import("aafcore.data", monkeypatch)
    assert not [w for w in caught if issubclass(w.category, DeprecationWarning)], [str(w.message) for w in caught]
    assert data.__all__ == OLD_DATA_ALL
    for name in OLD_DATA_ALL:
        assert getattr(data, name) is getattr(datasets, name), name
    assert data.class_groups is class_groups and data.POLE == POLE


@pytest.mark.parametrize("old, new, names", [
    ("aafcore.voc", "aafcore.datasets.voc",
     ["SPLITS_DIR", "VOC_AUG_SPLITS", "read_split_list", "read_sbd_mat", "sbd_root", "train_aug_ids",
      "VOCAugDataset", "write_voc_fixture"]),
    ("aafcore.cityscapes", "aafcore.datasets.cityscapes",
     ["CityscapesLabel", "CITYSCAPES_LABELS", "CITYSCAPES_CLASSES", "cityscapes_palette", "id_to_train_id_lut",
      "map_label_ids", "CityscapesDataset", "GTA5Dataset", "write_cityscapes_fixture", "write_gta5_fixture",
      "NUM_TRAIN_IDS", "CITYSCAPES_SPLITS", "GTA5_SPLITS", "GTA5_PART1_LAST", "GTA5_LABEL_MODES"]),
])
def test_old_reader_modules_warn_once_and_keep_their_names(monkeypatch, old, new, names):
    module, caught = _fresh_import(old, monkeypatch)
    deprecations = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert len(deprecations) == 1 and new in str(deprecations[0].message), [str(w.message) for w in caught]
    target = importlib.import_module(new)
    for name in names:
        home = testing if name.startswith("write_") or name == "GTA5_LABEL_MODES" else target
        assert getattr(module, name) is getattr(home, name), name
    assert set(module.__all__) <= set(names)


def test_the_split_lists_are_found():
    assert (datasets.SPLITS_DIR / "voc_train_aug.txt").is_file()
    assert len(datasets.read_split_list(datasets.SPLITS_DIR / "voc_train_aug.txt")) == 10582


# --------------------------------------------------------------------------- registry and groups


def test_one_registry_table():
    assert DATASETS == ("synthetic", "voc", "voc_aug", "cityscapes", "gta5")
    assert tuple(DATASET_BUILDERS) == DATASETS


def test_class_groups(smoke_data):
    ds = build_dataset("synthetic", smoke_data, "val")
    groups = class_groups(ds)
    assert groups == {"large": [0, 1, 2, 3], "thin": [4, 5, 6, 7]} and list(groups) == ["large", "thin"]
    assert groups == {g: [i for i, c in enumerate(SYNTHETIC_CLASSES) if c.group == g] for g in groups}

    class Fake:
        meta = {"classes": [{"group": "thin"}, {"group": "large"}, {"name": "no group"}, {"group": "thin"}, "x"]}

    assert list(class_groups(Fake()).items()) == [("thin", [0, 3]), ("large", [1])]
    assert class_groups(object()) == {}


# --------------------------------------------------------------------------- import rules


def _imports(path: Path) -> list[tuple[str, bool]]:
    """``(module, at module level)`` of every import of ``path``."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append((node.module or "", id(node) in top))
    return out


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")) + [Path(testing.__file__)], ids=lambda p: p.name)
def test_dataset_modules_import_only_errors_and_datasets(path):
    for module, top_level in _imports(path):
        if module.startswith("aafcore"):
            assert top_level, f"{path.name}: function-local import of {module}"
            assert module == "aafcore.errors" or module.startswith("aafcore.datasets"), f"{path.name}: {module}"


# --------------------------------------------------------------------------- the synthetic benchmark


def test_the_benchmark_did_not_change():
    """Label and instance maps of three smoke images, as the generator before the package split drew them."""
    want = {("train", "source", 0): "afd6d220ef654866", ("val", "shifted", 3): "47ccc497548bd566",
            ("test", "source", 7): "d48ffbde5ec42cbc"}
    for (split, domain, i), digest in want.items():
        _, label, instance = render_synthetic(SYNTHETIC_PROFILES["smoke"], split, domain, i)
        assert hashlib.sha256(label.tobytes() + instance.tobytes()).hexdigest()[:16] == digest, (split, domain, i)


SIZE = 128
SEEDS = range(6)


def _ground() -> Ground:
    return Ground(SIZE, 40.0, 44.0, thin=2.5)


def _draw(fn, seed: int, x: float = 64.0, y: float = 100.0) -> tuple[Canvas, np.ndarray, list[int]]:
    """``fn`` on a canvas of ground; returns the canvas, the element map before and the new elements."""
    cv = Canvas(SIZE)
    cv.new_element(GROUND, False)
    cv.elem[:] = 1
    before = cv.elem.copy()
    n = len(cv.cls)
    if fn is draw_building:
        fn(cv, _ground(), np.random.default_rng(seed))
    else:
        fn(cv, _ground(), np.random.default_rng(seed), x, y)
    new = list(range(n, len(cv.cls)))
    changed = cv.elem != before
    assert set(np.unique(cv.elem[changed]).tolist()) <= set(new)  # paints only its own elements
    assert [e for e, _ in cv.things] == new and cv.inst[n:] == list(range(1, len(new) + 1))
    return cv, before, new


def _rows_cols(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]


@pytest.mark.parametrize("seed", SEEDS)
def test_draw_building_stands_on_the_horizon(seed):
    cv, _, new = _draw(draw_building, seed)
    assert len(new) == 1 and cv.cls[new[0]] == BUILDING and cv.feet == []
    mask = cv.elem == new[0]
    if not mask.any():  # drawn off the picture
        return
    rows, cols = _rows_cols(mask)
    g = _ground()
    lo, hi = sorted((g.horizon(-0.15 * SIZE), g.horizon(SIZE)))  # the horizon under the building's centre
    assert lo - 1 <= rows[-1] <= hi + 0.06 * SIZE + 1  # base on or just below the horizon
    assert rows[-1] - rows[0] >= 0.15 * SIZE - 1  # at least 0.15 S tall
    assert all(mask[rows[-1] - 1, c] for c in cols[1:-1])  # a flat base under every column


@pytest.mark.parametrize("seed", SEEDS)
def test_draw_animal_is_a_big_blob_on_legs(seed):
    cv, _, new = _draw(draw_animal, seed)
    assert len(new) == 1 and cv.cls[new[0]] == ANIMAL
    mask = cv.elem == new[0]
    rows, cols = _rows_cols(mask)
    p = _ground().persp(100.0)
    assert abs(rows[-1] - 100) <= 2  # the feet on the ground
    assert cols[-1] - cols[0] >= 0.2 * p * SIZE - 1  # body at least 0.2 p S wide
    assert ndimage.binary_opening(mask, np.ones((5, 5))).sum() > 0.5 * mask.sum()  # mostly thick
    assert ndimage.label(mask)[1] <= 3  # body with legs; the head and the tail may stand apart


@pytest.mark.parametrize("seed", SEEDS)
def test_draw_pole_is_a_thin_vertical_line(seed):
    cv, _, new = _draw(draw_pole, seed)
    assert len(new) == 1 and cv.cls[new[0]] == POLE
    mask = cv.elem == new[0]
    rows, _ = _rows_cols(mask)
    g = _ground()
    w_max = g.width(3, g.persp(100.0))
    assert abs(rows[-1] - 100) <= w_max  # stands on the ground
    height = rows[-1] - rows[0] + 1
    assert height >= min(100, 0.45 * g.persp(100.0) * SIZE) - 2
    lower = mask[rows[0] + height // 3: 100]  # below any lamp arm: one narrow run per row around x = 64
    for row in lower:
        cols = np.nonzero(row)[0]
        assert len(cols) >= 1, "the pole has a gap"
        assert len(cols) <= w_max + 1, (len(cols), w_max)   # narrow: at most the drawn width
        assert cols[-1] - cols[0] + 1 == len(cols)           # one run, no holes
        assert abs(cols.mean() - 64) <= 1.5
    assert height >= 5 * (w_max + 1)


@pytest.mark.parametrize("seed", SEEDS)
def test_draw_fence_is_a_lattice_in_a_low_wide_box(seed):
    cv, _, new = _draw(draw_fence, seed)
    assert len(new) == 1 and cv.cls[new[0]] == FENCE
    mask = cv.elem == new[0]
    rows, cols = _rows_cols(mask)
    box = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    assert abs(rows[-1] - 100) <= 3 and box.shape[1] > box.shape[0]  # on the ground, wider than tall
    assert box.mean() < 0.8 and ndimage.label(~box)[1] >= 2  # lines with holes between them
    assert box[:, :3].any(1).mean() > 0.8 and box[:, -3:].any(1).mean() > 0.8  # end posts along the height
    assert ndimage.label(mask, np.ones((3, 3)))[1] == 1


@pytest.mark.parametrize("seed", SEEDS)
def test_draw_wheel_is_a_spoked_ring_per_instance(seed):
    cv, _, new = _draw(draw_wheel, seed)
    assert len(new) in (1, 2) and all(cv.cls[e] == WHEEL for e in new) and len(cv.feet) == 1
    for e in new:
        mask = cv.elem == e
        if not mask.any():  # hidden by its pair
            continue
        rows, cols = _rows_cols(mask)
        h, w = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
        assert abs(rows[-1] - 100) <= 2  # standing on the ground
        if cols[0] == 0 or cols[-1] == SIZE - 1:  # a pair's second wheel can leave the picture
            continue
        assert abs(h - w) <= 3  # round
        cy, cx = (rows[0] + rows[-1]) // 2, (cols[0] + cols[-1]) // 2
        assert mask[cy - 1:cy + 2, cx - 1:cx + 2].any()  # the hub
        inside = ndimage.binary_fill_holes(mask) & ~mask
        assert ndimage.label(inside)[1] >= 3  # spokes split the inside into >= 3 gaps


@pytest.mark.parametrize("seed", SEEDS)
def test_draw_person_is_a_stick_figure(seed):
    cv, _, new = _draw(draw_person, seed)
    assert len(new) == 1 and cv.cls[new[0]] == PERSON
    mask = cv.elem == new[0]
    rows, cols = _rows_cols(mask)
    p = _ground().persp(100.0)
    height = rows[-1] - rows[0] + 1
    assert 0.22 * p * SIZE - 3 <= height <= 0.38 * p * SIZE + 3 and abs(rows[-1] - 100) <= 3
    assert mask.sum() < 0.3 * height ** 2  # limbs, not a blob (a filled h x h/2 box would be 0.5)
    assert ndimage.label(mask, np.ones((3, 3)))[1] == 1  # head, torso, arms and legs joined


def test_draw_scene_layers_sky_ground_and_things():
    cv = draw_scene(np.random.default_rng(3), SIZE, 2.5)
    assert cv.cls[:3] == [0, SKY, GROUND] and set(cv.cls[3:]) <= set(range(BUILDING, PERSON + 1))
    labels = np.array(cv.cls)[cv.elem]
    assert (labels[0] == SKY).mean() > 0.3 and (labels[-1] != SKY).all()
    assert len(cv.things) == len(cv.cls) - 3 and len(cv.feet) <= len(cv.things)
