"""Appearance of the synthetic benchmark: colours, textures, lighting, clutter, blur and noise.

:func:`paint_scene` turns the element map of a :class:`aafcore.datasets.scene.Canvas` into a
picture ``uint8 [S, S, 3]`` in one of two appearance domains (:data:`STYLES`: ``"source"`` and
``"shifted"``), drawing every random number from one generator in a fixed order: class colours,
element colours, textures, lighting, shadows, clutter, noise (:mod:`aafcore.datasets.synthetic`
describes the choices).  Pictures are float64 RGB in [0, 1] until the last step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from aafcore.datasets.scene import ANIMAL, BUILDING, FENCE, GROUND, PERSON, POLE, SKY, SYNTHETIC_CLASSES, WHEEL, Canvas

__all__ = ["Style", "STYLES", "paint_scene", "gaussian_blur"]

_NUM_SYN = len(SYNTHETIC_CLASSES)


@dataclass(frozen=True)
class Style:
    """Appearance of one domain (geometry does not depend on it)."""

    mean_shift: tuple  # added to every class mean colour
    saturation: float
    tint: tuple
    contrast: float
    gamma: float
    texture_gain: float
    clutter_gain: float
    blur_sigma: float
    noise_sigma: float


# Mean colours (RGB in [0, 1]) of the classes in the source domain; the per-image spread (0.08 per
# channel plus a shared 0.06 tint) is comparable to many distances between these means.
_CLASS_MEANS = np.array([
    [0.55, 0.68, 0.85],  # sky
    [0.45, 0.43, 0.40],  # ground
    [0.58, 0.50, 0.46],  # building
    [0.55, 0.42, 0.32],  # animal
    [0.35, 0.35, 0.38],  # pole
    [0.48, 0.48, 0.46],  # fence
    [0.25, 0.25, 0.27],  # wheel
    [0.58, 0.38, 0.40],  # person
])
STYLES = {
    "source": Style(mean_shift=(0.0, 0.0, 0.0), saturation=1.0, tint=(0.0, 0.0, 0.0), contrast=1.0,
                    gamma=1.0, texture_gain=1.0, clutter_gain=1.0, blur_sigma=0.6, noise_sigma=0.025),
    "shifted": Style(mean_shift=(0.04, 0.0, -0.06), saturation=0.7, tint=(0.05, 0.02, -0.04),
                     contrast=0.9, gamma=0.85, texture_gain=1.5, clutter_gain=1.5, blur_sigma=0.8,
                     noise_sigma=0.04),
}
# per-class shift of the mean colours in the shifted domain (fixed, part of the generator version)
_SHIFTED_CLASS_SHIFT = np.array([
    [0.05, -0.05, -0.10], [0.06, 0.02, -0.04], [-0.04, 0.02, 0.06], [-0.06, 0.04, 0.08],
    [0.08, 0.06, 0.00], [-0.05, -0.02, 0.05], [0.10, 0.08, 0.05], [-0.08, 0.04, 0.10],
])
_CLASS_SPREAD = 0.08  # per-image, per-class colour spread (std per channel)
_TINT_SPREAD = 0.06  # per-image tint shared by all classes
_INSTANCE_SPREAD = 0.05
# things try (10 draws) to differ this much (RGB distance) from what they hide: large / thin things
_MIN_CONTRAST = {"large": 0.15, "thin": 0.3}

# texture kinds: 0 flat, 1 smooth noise, 2 speckle, 3 stripes, 4 grid (windows/tiles), 5 vertical
# gradient, 6 spots.  Probabilities per class: shared between classes, not exclusive.
_TEXTURE_P = np.array([
    [0.20, 0.35, 0.00, 0.00, 0.00, 0.45, 0.00],  # sky
    [0.15, 0.30, 0.20, 0.15, 0.10, 0.00, 0.10],  # ground
    [0.15, 0.10, 0.10, 0.10, 0.55, 0.00, 0.00],  # building
    [0.20, 0.30, 0.10, 0.15, 0.05, 0.00, 0.20],  # animal
    [0.60, 0.20, 0.20, 0.00, 0.00, 0.00, 0.00],  # pole
    [0.60, 0.20, 0.20, 0.00, 0.00, 0.00, 0.00],  # fence
    [0.60, 0.20, 0.20, 0.00, 0.00, 0.00, 0.00],  # wheel
    [0.60, 0.20, 0.20, 0.00, 0.00, 0.00, 0.00],  # person
])
_TEXTURE_AMP = np.array([(0.04, 0.14)] * 4 + [(0.0, 0.05)] * 4)  # uniform range of the amplitude


# --------------------------------------------------------------------------- colours


def _class_colours(rng: np.random.Generator, domain: str) -> np.ndarray:
    """Colours ``[8, 3]`` of the classes in this image: class mean + image tint + per-class spread."""
    means = _CLASS_MEANS + np.asarray(STYLES[domain].mean_shift)
    if domain == "shifted":
        means = means + _SHIFTED_CLASS_SHIFT
    return means + rng.normal(0, _TINT_SPREAD, 3) + rng.normal(0, _CLASS_SPREAD, (_NUM_SYN, 3))


def _element_colours(rng: np.random.Generator, cv: Canvas, class_col: np.ndarray) -> np.ndarray:
    """Colours ``[n_elements, 3]``: the class colour + a per-instance spread, then every thing
    redrawn (up to 10 times) until it differs enough from what it hides."""
    cls = np.array(cv.cls)
    col = np.clip(class_col[cls] + rng.normal(0, _INSTANCE_SPREAD, (len(cv.cls), 3)), 0.02, 0.98)
    for e, hidden in cv.things:  # keep things visible against what they hide, when a few draws allow
        if hidden.size == 0:
            continue
        behind = col[hidden].mean(0)
        best, best_d = col[e], np.linalg.norm(col[e] - behind)
        for _ in range(10):
            if best_d >= _MIN_CONTRAST[SYNTHETIC_CLASSES[cls[e]].group]:
                break
            cand = np.clip(class_col[cls[e]] + rng.normal(0, _CLASS_SPREAD, 3), 0.02, 0.98)
            dist = np.linalg.norm(cand - behind)
            if dist > best_d:
                best, best_d = cand, dist
        col[e] = best
    return col


# --------------------------------------------------------------------------- textures and lighting


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Zero-mean unit-std smooth noise ``[size, size]``: a random ``cells x cells`` grid upsampled."""
    grid = rng.standard_normal((cells, cells)).astype(np.float32)
    up = np.asarray(Image.fromarray(grid, mode=None).resize((size, size), Image.BICUBIC), dtype=np.float32)
    up = up - up.mean()
    return up / max(float(up.std()), 1e-6)


def _texture_fields(rng: np.random.Generator, size: int, unit: float) -> np.ndarray:
    """The 7 texture fields ``float32 [7, size, size]`` of one image, roughly in [-1, 1]."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    t = np.zeros((7, size, size), np.float32)
    t[1] = np.clip(_smooth_noise(rng, size, 6) / 2, -1, 1)
    t[2] = np.clip(rng.standard_normal((size, size)).astype(np.float32) / 2, -1, 1)
    theta = rng.uniform(0, math.pi)
    period = rng.uniform(4, 12) * unit
    phase = rng.uniform(0, 2 * math.pi)
    t[3] = np.sin(2 * math.pi * (xx * math.cos(theta) + yy * math.sin(theta)) / period + phase)
    px, py = rng.uniform(6, 14, size=2) * unit
    wx, wy = px * rng.uniform(0.35, 0.6), py * rng.uniform(0.35, 0.6)
    ox, oy = rng.uniform(0, px), rng.uniform(0, py)
    t[4] = np.where(((xx + ox) % px < wx) & ((yy + oy) % py < wy), 1.0, -0.4)
    t[5] = 2 * yy / size - 1
    t[6] = np.where(_smooth_noise(rng, size, max(4, size // 8)) > 1.0, 1.0, -0.15)
    return t


def _textured(rng: np.random.Generator, cv: Canvas, col: np.ndarray, style: Style, unit: float) -> np.ndarray:
    """Picture ``float64 [S, S, 3]``: each element's colour plus one texture field of a kind drawn
    per element (class-dependent probabilities), a random amplitude and a colour direction;
    ``unit``: the texture scale in pixels per pixel of a 128 px image."""
    size = cv.size
    cls = np.array(cv.cls)
    tex = _texture_fields(rng, size, unit)
    kind = np.array([rng.choice(7, p=_TEXTURE_P[c]) for c in cls])
    lo, hi = _TEXTURE_AMP[cls, 0], _TEXTURE_AMP[cls, 1]
    amp = rng.uniform(lo, hi) * style.texture_gain
    direction = 1.0 + rng.normal(0, 0.3, (len(cv.cls), 3))
    elem = cv.elem.astype(np.intp)
    t = np.take_along_axis(tex, kind[elem][None], 0)[0]
    return col[elem] + (amp[elem] * t)[..., None] * direction[elem]


def _lighting(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """A vertical brightness gradient (+-25 % at most) over ``img [S, S, 3]``."""
    yy = np.arange(img.shape[0], dtype=np.float64)[:, None, None] / img.shape[0] - 0.5
    return img * (1 + rng.uniform(-0.25, 0.25) * yy)


# --------------------------------------------------------------------------- clutter


def _shadows(rng: np.random.Generator, cv: Canvas, img: np.ndarray, ground: np.ndarray) -> None:
    """Darken a flat ellipse on the ground pixels (``ground`` bool ``[S, S]``) under every foot, in place."""
    for x, y, hw in cv.feet:
        sh, d = cv.scratch()
        right = x + hw * 1.2 + rng.uniform(0, hw)
        d.ellipse([x - hw * 1.2, y - hw * 0.15 - 1, right, y + hw * 0.15 + 1], fill=1)
        m = (np.asarray(sh) > 0) & ground
        img[m] *= rng.uniform(0.55, 0.85)


def _clutter_shape(rng: np.random.Generator, cv: Canvas, blob: bool, unit: float) -> tuple[int, np.ndarray]:
    """One clutter shape: ``(class whose colour it borrows, mask bool [S, S])``; a blob (ellipse or
    pentagon with an object's colour) or a short thin crack (a thin thing's colour, 1-2 ``unit`` wide)."""
    S = float(cv.size)
    sh, d = cv.scratch()
    if blob:
        like = rng.choice([ANIMAL, PERSON, WHEEL, BUILDING, POLE])
        cx, cy = rng.uniform(0, S, 2)
        rx, ry = rng.uniform(0.03, 0.1, 2) * S
        if rng.random() < 0.5:
            d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=1)
        else:
            a = np.sort(rng.uniform(0, 2 * math.pi, 5))
            d.polygon([(cx + rx * math.cos(t_), cy + ry * math.sin(t_)) for t_ in a], fill=1)
    else:
        like = rng.choice([POLE, FENCE, WHEEL, PERSON])
        cx, cy = rng.uniform(0, S, 2)
        length = rng.uniform(0.03, 0.12) * S
        a = rng.uniform(0, math.pi)
        d.line([(cx, cy), (cx + length * math.cos(a), cy + length * math.sin(a))], fill=1,
               width=int(max(1, round(rng.choice([1, 1, 2]) * unit))))
    return like, np.asarray(sh) > 0


def _clutter(rng: np.random.Generator, cv: Canvas, img: np.ndarray, class_col: np.ndarray, style: Style,
             background: np.ndarray, unit: float) -> None:
    """Blend Poisson-many blobs and cracks into the background pixels (``background`` bool ``[S, S]``:
    sky, ground, buildings) of ``img``, in place; the label does not change."""
    n_blobs = rng.poisson(5 * style.clutter_gain)
    n_cracks = rng.poisson(5 * style.clutter_gain)
    for k in range(n_blobs + n_cracks):
        like, shape = _clutter_shape(rng, cv, k < n_blobs, unit)
        c = np.clip(class_col[like] + rng.normal(0, _INSTANCE_SPREAD, 3), 0.02, 0.98)
        alpha = rng.uniform(0.5, 1.0)
        m = shape & background
        img[m] = (1 - alpha) * img[m] + alpha * c


# --------------------------------------------------------------------------- finishing


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of ``[H, W, 3]`` with reflected borders."""
    if sigma <= 0:
        return img
    r = max(1, int(math.ceil(2.5 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    h, w = img.shape[:2]
    p = np.pad(img, ((r, r), (0, 0), (0, 0)), mode="reflect")
    out = sum(k[i] * p[i:i + h] for i in range(2 * r + 1))
    p = np.pad(out, ((0, 0), (r, r), (0, 0)), mode="reflect")
    return sum(k[i] * p[:, i:i + w] for i in range(2 * r + 1))


def _finish(rng: np.random.Generator, img: np.ndarray, style: Style, unit: float) -> np.ndarray:
    """Blur (``style.blur_sigma * unit`` px), the domain's colour transform (saturation, tint,
    contrast, gamma) and Gaussian noise: ``float [S, S, 3]`` -> ``uint8 [S, S, 3]``."""
    img = gaussian_blur(img, style.blur_sigma * unit)
    lum = img.mean(-1, keepdims=True)
    img = lum + style.saturation * (img - lum) + np.asarray(style.tint)
    img = (img - 0.5) * style.contrast + 0.5
    img = np.clip(img, 0, 1) ** style.gamma
    img = img + rng.normal(0, style.noise_sigma, img.shape)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def paint_scene(rng: np.random.Generator, cv: Canvas, domain: str, unit: float | None = None) -> np.ndarray:
    """The picture ``uint8 [S, S, 3]`` of the scene ``cv`` in appearance domain ``domain`` (a key of
    :data:`STYLES`), all randomness from ``rng``.

    ``unit`` (pixels per pixel of a 128 px image) scales the textures, the clutter cracks and the
    blur; by default ``S / 128`` (benchmark v1: appearance scales with the image).  Benchmark v2
    passes a fixed unit, so its appearance has the same pixel scale whatever the image size.
    """
    unit = cv.size / 128.0 if unit is None else float(unit)
    style = STYLES[domain]
    class_col = _class_colours(rng, domain)
    col = _element_colours(rng, cv, class_col)
    img = _lighting(rng, _textured(rng, cv, col, style, unit))
    cls_map = np.array(cv.cls)[cv.elem.astype(np.intp)]
    _shadows(rng, cv, img, cls_map == GROUND)
    _clutter(rng, cv, img, class_col, style, np.isin(cls_map, (SKY, GROUND, BUILDING)), unit)
    return _finish(rng, img, style, unit)
