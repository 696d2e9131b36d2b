"""Geometry of the synthetic benchmark: its eight classes and one drawing function per object kind.

A scene (:func:`draw_scene`) is drawn on a :class:`Canvas`, an element map ``uint8 [S, S]``
where every drawn shape is an *element* with a class, an instance id and (later, in
:mod:`aafcore.datasets.appearance`) a colour.  The sky/ground split and the perspective are a
:class:`Ground`; buildings stand on its horizon (:func:`draw_building`) and the objects stand on
the ground, drawn far to near: :func:`draw_animal`, :func:`draw_pole`, :func:`draw_fence`,
:func:`draw_wheel`, :func:`draw_person`.  Each object function takes its own generator, so the
order of the main generator's draws is that of :func:`draw_scene` alone.

The classes (:data:`SYNTHETIC_CLASSES`) and what each function draws are described in the
module docstring of :mod:`aafcore.datasets.synthetic`.  Benchmark v2 (the ``study`` profile) has
a drawing function per kind of its own (``draw_study_*``, sizes in logit cells of :data:`CELL` px),
the v1 sky and ground, and its scene composition in :mod:`aafcore.datasets.synthetic`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["SyntheticClass", "SYNTHETIC_CLASSES", "SKY", "GROUND", "BUILDING", "ANIMAL", "POLE", "FENCE",
           "WHEEL", "PERSON", "width_px", "synthetic_class_table", "synthetic_palette", "Canvas", "Ground",
           "draw_building", "draw_animal", "draw_pole", "draw_fence", "draw_wheel", "draw_person", "OBJECT_KINDS",
           "draw_scene", "CELL", "study_persp", "draw_study_building", "draw_study_animal", "draw_study_pole",
           "draw_study_fence", "draw_study_wheel", "draw_study_person", "STUDY_OBJECT_KINDS"]


# --------------------------------------------------------------------------- classes


@dataclass(frozen=True)
class SyntheticClass:
    """One class of the synthetic benchmark.  ``width_px``: typical structure width at 128 px."""

    name: str
    group: str  # "large" or "thin"
    stuff: bool  # stuff classes have no instances (instance id 0)
    width_px: float
    color: tuple[int, int, int]  # colour of the label palette
    description: str


SYNTHETIC_CLASSES: tuple[SyntheticClass, ...] = (
    SyntheticClass("sky", "large", True, 50, (70, 130, 180),
                   "region above the horizon; smooth gradient or cloud texture (stuff)"),
    SyntheticClass("ground", "large", True, 60, (128, 64, 128),
                   "region below the horizon; smooth, striped, speckled or tiled texture (stuff)"),
    SyntheticClass("building", "large", False, 30, (70, 70, 70),
                   "rectangles with flat, gabled or stepped roofs standing on the horizon; "
                   "usually a window-grid texture"),
    SyntheticClass("animal", "large", False, 15, (0, 150, 0),
                   "big blob: ellipse body and head, four thick legs, sometimes a thin tail"),
    SyntheticClass("pole", "thin", False, 2, (153, 153, 153),
                   "vertical 1-3 px line standing on the ground, sometimes with a lamp arm"),
    SyntheticClass("fence", "thin", False, 1, (190, 153, 153),
                   "lattice of 1-2 px lines (rectilinear or diagonal chain-link) with rails and "
                   "end posts, standing on the ground"),
    SyntheticClass("wheel", "thin", False, 2, (0, 0, 142),
                   "ring (1-2 px) with 3-8 radial 1 px spokes and a small hub; alone or in pairs"),
    SyntheticClass("person", "thin", False, 2, (220, 20, 60),
                   "stick figure: small disc head, 1-3 px torso, 1-2 px bent arms and legs"),
)
SKY, GROUND, BUILDING, ANIMAL, POLE, FENCE, WHEEL, PERSON = range(8)


def width_px(c: SyntheticClass, image_size: int, thin_width: float) -> float:
    """Typical structure width of class ``c`` in pixels of an ``image_size`` image."""
    return round(max(1.0, c.width_px * image_size / 128.0 * (thin_width if c.group == "thin" else 1.0)), 1)


def synthetic_class_table(image_size: int = 128, thin_width: float = 1.0) -> list[dict]:
    """The class table as dicts (index, name, group, stuff, width_px at ``image_size``, description).

    ``thin_width`` is :attr:`SyntheticSpec.thin_width`, the factor on the thin classes' line widths.
    """
    return [{"index": i, "name": c.name, "group": c.group, "stuff": c.stuff,
             "width_px": width_px(c, image_size, thin_width), "description": c.description}
            for i, c in enumerate(SYNTHETIC_CLASSES)]


def synthetic_palette() -> np.ndarray:
    """Label palette ``uint8 [256, 3]``: the class colours, void (255) in VOC's cream colour."""
    pal = np.zeros((256, 3), dtype=np.uint8)
    for i, c in enumerate(SYNTHETIC_CLASSES):
        pal[i] = c.color
    pal[255] = (224, 224, 192)
    return pal


# --------------------------------------------------------------------------- canvas and ground


class Canvas:
    """Element map of one scene ``elem`` uint8 ``[size, size]``: each drawn shape is an element with
    class ``cls[e]`` and instance ``inst[e]`` (element 0: nothing, class sky).

    ``things`` lists ``(element, element ids it hid)`` for the contrast check of the colours;
    ``feet`` lists ``(x, y, half width)`` of the objects on the ground (for their shadows).
    """

    def __init__(self, size: int):
        self.size = size
        self.elem = np.zeros((size, size), np.uint8)
        self.cls: list[int] = [0]
        self.inst: list[int] = [0]
        self.num_instances = 0
        self.things: list[tuple[int, np.ndarray]] = []
        self.feet: list[tuple[float, float, float]] = []

    def new_element(self, cls: int, instance: bool) -> int:
        """A new element of class ``cls`` (a new instance id when ``instance``); 0 once 255 exist."""
        if len(self.cls) >= 255:
            return 0
        if instance:
            self.num_instances += 1
        self.cls.append(cls)
        self.inst.append(self.num_instances if instance else 0)
        return len(self.cls) - 1

    def scratch(self) -> tuple[Image.Image, ImageDraw.ImageDraw]:
        """A blank ``'L'`` image ``[size, size]`` to draw a shape on, and its drawing context."""
        img = Image.new("L", (self.size, self.size), 0)
        return img, ImageDraw.Draw(img)

    def paint(self, element: int, mask_img: Image.Image) -> tuple[np.ndarray, np.ndarray]:
        """Paint ``element`` where the scratch image is non-zero; returns (mask, element ids hidden)."""
        mask = np.asarray(mask_img) > 0
        hidden = self.elem[mask]
        if element:
            self.elem[mask] = element
        return mask, hidden

    def paint_thing(self, element: int, mask_img: Image.Image) -> None:
        """:meth:`paint` a thing and record it in ``things``."""
        self.things.append((element, self.paint(element, mask_img)[1]))


@dataclass(frozen=True)
class Ground:
    """Horizon and perspective of a ``size`` px scene: the horizon runs from ``(−1, hl)`` to
    ``(size, hr)``; ``thin`` is the factor on the thin classes' line widths."""

    size: int
    hl: float
    hr: float
    thin: float = 1.0

    @property
    def S(self) -> float:  # noqa: N802 - the image size as a float, as in the formulas
        return float(self.size)

    @property
    def u(self) -> float:
        """Pixels per pixel of a 128 px image."""
        return self.size / 128.0

    def horizon(self, x: float) -> float:
        """y of the horizon at column ``x``."""
        return self.hl + (self.hr - self.hl) * (x + 1) / (self.S + 1)

    def persp(self, y: float) -> float:
        """Scale of an object standing at ``y``: objects near the bottom are larger (0.45 .. 1.62)."""
        h = self.horizon(self.S / 2)
        return 0.45 + 0.9 * min(max((y - h) / max(self.S - h, 1.0), 0.0), 1.3)

    def width(self, base: float, p: float = 1.0, cap: float = 3.0) -> int:
        """Line width in pixels of a thin structure ``base`` px wide at 128 px and scale ``p``."""
        return int(max(1, round(min(base * min(max(p, 0.6), 1.4), cap) * self.u * self.thin)))


# --------------------------------------------------------------------------- one function per kind


def draw_building(cv: Canvas, g: Ground, rng: np.random.Generator) -> None:
    """A building on the horizon: a rectangle with a flat, gabled or stepped roof (one instance)."""
    S = g.S
    w = rng.uniform(0.15, 0.45) * S
    x0 = rng.uniform(-0.15, 1.0) * S - w / 2
    base = g.horizon(x0 + w / 2) + rng.uniform(0.0, 0.06) * S
    top = base - rng.uniform(0.15, 0.55) * S
    e = cv.new_element(BUILDING, True)
    img, d = cv.scratch()
    roof = rng.choice(3, p=[0.5, 0.3, 0.2])
    if roof == 0:
        pts = [(x0, base), (x0, top), (x0 + w, top), (x0 + w, base)]
    elif roof == 1:
        peak = rng.uniform(0.08, 0.2) * S
        pts = [(x0, base), (x0, top), (x0 + w / 2, top - peak), (x0 + w, top), (x0 + w, base)]
    else:
        step = rng.uniform(0.05, 0.15) * S
        xs = x0 + w * rng.uniform(0.3, 0.7)
        pts = [(x0, base), (x0, top), (xs, top), (xs, top - step), (x0 + w, top - step), (x0 + w, base)]
    d.polygon(pts, fill=1)
    cv.paint_thing(e, img)


def draw_animal(cv: Canvas, g: Ground, r: np.random.Generator, x: float, y: float) -> None:
    """A blob animal standing at ``(x, y)``: ellipse body and head, four thick legs, maybe a thin tail."""
    S, u, p = g.S, g.u, g.persp(y)
    bw = p * r.uniform(0.2, 0.38) * S
    bh = bw * r.uniform(0.45, 0.65)
    legs = bh * r.uniform(0.4, 0.7)
    bottom = y - legs
    e = cv.new_element(ANIMAL, True)
    img, d = cv.scratch()
    d.ellipse([x - bw / 2, bottom - bh, x + bw / 2, bottom + bh * 0.1], fill=1)
    side = 1 if r.random() < 0.5 else -1
    hr_ = bh * r.uniform(0.35, 0.5)
    hx = x + side * (bw / 2 + hr_ * 0.3)
    hy = bottom - bh * r.uniform(0.8, 1.2)
    d.ellipse([hx - hr_ * 1.2, hy - hr_, hx + hr_ * 1.2, hy + hr_], fill=1)
    lw = max(3 * u, 0.12 * bw)
    for fx in (-0.38, -0.22, 0.22, 0.38):
        lx = x + fx * bw + r.uniform(-0.04, 0.04) * bw
        foot = lx + r.uniform(-0.05, 0.05) * bw
        d.line([(lx, bottom - bh * 0.2), (foot, y)], fill=1, width=int(round(lw)))
    if r.random() < 0.5:
        tx = x - side * bw / 2
        end = (tx - side * bw * r.uniform(0.15, 0.3), bottom - bh * r.uniform(0.0, 0.9))
        d.line([(tx, bottom - bh * 0.7), end], fill=1, width=g.width(2, p))
    cv.paint_thing(e, img)
    cv.feet.append((x, y, bw * 0.6))


def draw_pole(cv: Canvas, g: Ground, r: np.random.Generator, x: float, y: float) -> None:
    """A vertical pole standing at ``(x, y)``, sometimes with a lamp arm at its top."""
    S, p = g.S, g.persp(y)
    w = g.width(r.choice([1, 2, 2, 3]), p)
    top = y - p * r.uniform(0.45, 0.95) * S
    e = cv.new_element(POLE, True)
    img, d = cv.scratch()
    d.line([(x, y), (x, top)], fill=1, width=w)
    if r.random() < 0.4:
        arm = p * r.uniform(0.05, 0.12) * S * (1 if r.random() < 0.5 else -1)
        d.line([(x, top), (x + arm, top)], fill=1, width=w)
        d.line([(x + arm, top), (x + arm, top + max(2, 0.03 * S * p))], fill=1, width=w + 1)
    cv.paint_thing(e, img)
    cv.feet.append((x, y, 2 * w))


def _lattice(r: np.random.Generator, img: Image.Image, d: ImageDraw.ImageDraw, box: tuple[float, ...],
             spacing: float, lw: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """The lines of a fence in ``box = (x0, x1, top, y, fh)`` (``fh = y - top``, the height as
    drawn): rectilinear, or diagonal chain-link clipped to the box; returns the (possibly new)
    scratch image and its drawing context."""
    x0, x1, top, y, fh = box
    if r.random() < 0.5:  # rectilinear
        xs = x0 + r.uniform(0, spacing)
        while xs < x1:
            d.line([(xs, top), (xs, y)], fill=1, width=lw)
            xs += spacing
        for k in range(1, int(r.integers(1, 3)) + 1):
            yk = top + fh * k / 3
            d.line([(x0, yk), (x1, yk)], fill=1, width=lw)
    else:  # diagonal chain-link
        c = x0 - fh + r.uniform(0, spacing)
        while c < x1 + fh:
            d.line([(c, y), (c + fh, top)], fill=1, width=lw)
            d.line([(c, top), (c + fh, y)], fill=1, width=lw)
            c += spacing
        clip = Image.new("L", img.size, 0)
        ImageDraw.Draw(clip).rectangle([x0, top, x1, y], fill=1)
        img = Image.fromarray((np.asarray(img) & np.asarray(clip)) * 255)
        d = ImageDraw.Draw(img)
    return img, d


def draw_fence(cv: Canvas, g: Ground, r: np.random.Generator, x: float, y: float) -> None:
    """A fence standing at ``(x, y)``: a lattice of thin lines in a rectangle, a top rail, two end posts."""
    S, u, p = g.S, g.u, g.persp(y)
    fw = r.uniform(0.25, 0.8) * S * min(p, 1.0)
    fh = p * r.uniform(0.08, 0.16) * S
    x0, x1, top = x - fw / 2, x + fw / 2, y - fh
    spacing = p * r.uniform(5, 9) * u * g.thin
    lw = g.width(1, 1.0, 1)
    e = cv.new_element(FENCE, True)
    img, d = cv.scratch()
    img, d = _lattice(r, img, d, (x0, x1, top, y, fh), spacing, lw)
    post = g.width(2, p)
    d.line([(x0, top), (x1, top)], fill=1, width=lw)
    d.line([(x0, top), (x0, y)], fill=1, width=post)
    d.line([(x1, top), (x1, y)], fill=1, width=post)
    cv.paint_thing(e, img)
    cv.feet.append((x, y, fw / 2))


def draw_wheel(cv: Canvas, g: Ground, r: np.random.Generator, x: float, y: float) -> None:
    """One wheel, or a bicycle-like pair, standing at ``(x, y)``: a ring with radial spokes and a
    hub (one instance per wheel)."""
    u, p = g.u, g.persp(y)
    rad = p * r.uniform(6, 12) * u * math.sqrt(g.thin)
    n = 2 if r.random() < 0.55 else 1
    gap = r.uniform(2.2, 3.0) * rad * (1 if r.random() < 0.5 else -1)
    for k in range(n):
        cx, cy = x + k * gap, y - rad
        e = cv.new_element(WHEEL, True)
        img, d = cv.scratch()
        d.ellipse([cx - rad, cy - rad, cx + rad, cy + rad], outline=1, width=g.width(1.5, p, 2))
        spokes = int(r.choice([3, 4, 5, 6, 8]))
        phase = r.uniform(0, 2 * math.pi)
        for s in range(spokes):
            a = phase + 2 * math.pi * s / spokes
            rim = (cx + rad * math.cos(a), cy + rad * math.sin(a))
            d.line([(cx, cy), rim], fill=1, width=g.width(1, 1.0, 1))
        hub = max(1.0, 0.15 * rad)
        d.ellipse([cx - hub, cy - hub, cx + hub, cy + hub], fill=1)
        cv.paint_thing(e, img)
    cv.feet.append((x + (n - 1) * gap / 2, y, abs(gap) / 2 * (n - 1) + rad))


def _person_limbs(d: ImageDraw.ImageDraw, r: np.random.Generator, x: float, y: float, h: float, hip: float,
                  neck: float, lean: float, leg_w: int, arm_width) -> None:
    """A stick figure's two legs (hip -> knee -> foot at ``y``) and two bent arms (shoulder -> elbow
    -> hand), one side then the other, with random angles from ``r``; ``arm_width()`` gives each
    arm's width when it is drawn (the random draws keep their order)."""
    for side in (-1, 1):
        knee = (x + side * r.uniform(0.0, 0.1) * h, hip + 0.25 * h)
        foot = (x + side * r.uniform(0.03, 0.18) * h, y)
        d.line([(x, hip), knee, foot], fill=1, width=leg_w, joint="curve")
        sh = (x + lean * 0.8, neck + 0.08 * h)
        a1 = side * r.uniform(0.1, 1.6)
        elbow = (sh[0] + 0.2 * h * math.sin(a1), sh[1] + 0.2 * h * math.cos(a1))
        a2 = a1 + side * r.uniform(-1.2, 1.2)
        hand = (elbow[0] + 0.18 * h * math.sin(a2), elbow[1] + 0.18 * h * math.cos(a2))
        d.line([sh, elbow, hand], fill=1, width=arm_width(), joint="curve")


def draw_person(cv: Canvas, g: Ground, r: np.random.Generator, x: float, y: float) -> None:
    """A stick figure standing at ``(x, y)``: disc head, torso, bent legs and arms."""
    S, u, p = g.S, g.u, g.persp(y)
    h = p * r.uniform(0.22, 0.38) * S
    head = max(1.5 * u, 0.075 * h)
    neck = y - h + 2 * head
    hip = y - 0.47 * h
    lean = r.uniform(-0.06, 0.06) * h
    e = cv.new_element(PERSON, True)
    img, d = cv.scratch()
    d.ellipse([x + lean - head, y - h, x + lean + head, y - h + 2 * head], fill=1)
    d.line([(x + lean, neck), (x, hip)], fill=1, width=g.width(2, p))
    leg_w = g.width(r.choice([1, 2]), p, 2)
    _person_limbs(d, r, x, y, h, hip, neck, lean, leg_w, lambda: g.width(1, p, 2))
    cv.paint_thing(e, img)
    cv.feet.append((x, y, 0.15 * h))


# kind -> (drawing function, possible counts per image, their probabilities); the main generator
# draws the counts and positions in this order
OBJECT_KINDS = {
    "animal": (draw_animal, 3, [0.35, 0.45, 0.2]),
    "pole": (draw_pole, 5, [0.1, 0.3, 0.3, 0.2, 0.1]),
    "fence": (draw_fence, 3, [0.35, 0.5, 0.15]),
    "wheel": (draw_wheel, 3, [0.3, 0.45, 0.25]),
    "person": (draw_person, 5, [0.15, 0.3, 0.3, 0.15, 0.1]),
}


# --------------------------------------------------------------------------- the scene


def _sky_and_ground(cv: Canvas, rng: np.random.Generator, thin: float) -> Ground:
    """Fill the canvas with ground and paint the sky above a slightly tilted horizon."""
    S = float(cv.size)
    hl = rng.uniform(0.33, 0.55) * S
    hr = hl + rng.uniform(-0.06, 0.06) * S
    sky = cv.new_element(SKY, False)
    ground = cv.new_element(GROUND, False)
    cv.elem[:] = ground
    img, d = cv.scratch()
    d.polygon([(-1, -1), (S, -1), (S, hr), (-1, hl)], fill=1)
    cv.paint(sky, img)
    return Ground(cv.size, hl, hr, thin)


def _place_objects(g: Ground, rng: np.random.Generator) -> list[tuple[float, float, str, int]]:
    """``(foot y, x, kind, seed)`` of the objects on the ground, sorted far (small y) to near."""
    S = g.S
    objects = []
    for kind, (_, counts, p) in OBJECT_KINDS.items():
        for _ in range(rng.choice(counts, p=p)):
            x = rng.uniform(-0.05, 1.05) * S
            y = g.horizon(x) + rng.uniform(0.04, 1.0) * (S * 1.02 - g.horizon(x))
            objects.append((y, x, kind, rng.integers(2**31)))
    objects.sort(key=lambda o: (o[0], o[1]))
    return objects


def draw_scene(rng: np.random.Generator, size: int, thin: float = 1.0) -> Canvas:
    """Draw the geometry of one ``size x size`` scene: sky and ground, 0-4 buildings, then the objects
    far to near (each from its own generator seeded by the main one); returns the :class:`Canvas`."""
    cv = Canvas(size)
    g = _sky_and_ground(cv, rng, thin)
    for _ in range(rng.choice(5, p=[0.15, 0.25, 0.3, 0.2, 0.1])):
        draw_building(cv, g, rng)
    for y, x, kind, sub_seed in _place_objects(g, rng):
        OBJECT_KINDS[kind][0](cv, g, np.random.default_rng(sub_seed), x, y)
    return cv


# --------------------------------------------------------------------------- benchmark v2 ("study")
# Lengths in logit cells of CELL = 8 px (output stride 8); the class table and the design are in the
# module docstring of aafcore.datasets.synthetic.  Nothing above this line is used differently.

CELL = 8


def study_persp(g: Ground, y: float) -> float:
    """Scale of a v2 object standing at ``y``: 0.7 at the horizon to 1.4 at the bottom (linear)."""
    h = g.horizon(g.S / 2)
    return 0.7 + 0.7 * min(max((y - h) / max(g.S - h, 1.0), 0.0), 1.0)


def _clip_px(value: float, lo: int, hi: int) -> int:
    """``value`` rounded to whole pixels and clipped to ``[lo, hi]``."""
    return int(min(max(round(value), lo), hi))


def _bar(d: ImageDraw.ImageDraw, x: float, y0: float, y1: float, w: int) -> None:
    """A vertical bar exactly ``w`` px wide, centred on column ``x``, rows ``y0`` to ``y1``."""
    left = int(math.floor(x - w / 2 + 0.5))
    d.rectangle([left, int(round(min(y0, y1))), left + w - 1, int(round(max(y0, y1)))], fill=1)


def draw_study_building(cv: Canvas, g: Ground, r: np.random.Generator) -> None:
    """A v2 building: 10-22 cells wide, 10-26 cells tall above its base (just below the horizon),
    flat, gabled or stepped roof (one instance)."""
    C = CELL
    w = r.uniform(10, 22) * C
    x0 = r.uniform(-0.1, 1.0) * g.S - w / 2
    base = g.horizon(x0 + w / 2) + r.uniform(0, 2) * C
    top = base - r.uniform(10, 26) * C
    roof = r.choice(3, p=[0.5, 0.3, 0.2])
    pts = [(x0, base), (x0, top)]
    if roof == 1:
        pts.append((x0 + w / 2, top - r.uniform(2, 5) * C))
    elif roof == 2:
        xs, step = x0 + w * r.uniform(0.3, 0.7), r.uniform(2, 5) * C
        pts += [(xs, top), (xs, top - step)]
        top -= step
    pts += [(x0 + w, top), (x0 + w, base)]
    e = cv.new_element(BUILDING, True)
    img, d = cv.scratch()
    d.polygon(pts, fill=1)
    cv.paint_thing(e, img)


def draw_study_animal(cv: Canvas, g: Ground, r: np.random.Generator, x: float, y: float) -> None:
    """A stocky v2 animal standing at ``(x, y)``: ellipse body 3-6.5 cells thick and 1.7-2.3 times as
    long, a neck and an ellipse head (0.6-0.8 of the body), two legs 0.4-0.55 of the body wide."""
    C, p = CELL, study_persp(g, y)
    bh = min(max(r.uniform(3.0, 5.0) * p, 3.0), 6.5) * C
    bw = bh * r.uniform(1.7, 2.3)
    bottom = y - bh * r.uniform(0.3, 0.6)
    side = 1 if r.random() < 0.5 else -1
    hr_ = bh * r.uniform(0.3, 0.4)
    hx, hy = x + side * (bw / 2 + 0.2 * hr_), bottom - bh * r.uniform(0.75, 1.1)
    lw = int(round(bh * r.uniform(0.4, 0.55)))
    e = cv.new_element(ANIMAL, True)
    img, d = cv.scratch()
    d.ellipse([x - bw / 2, bottom - bh, x + bw / 2, bottom], fill=1)
    d.line([(x + side * 0.3 * bw, bottom - 0.6 * bh), (hx, hy)], fill=1, width=int(round(0.5 * bh)))
    d.ellipse([hx - 1.2 * hr_, hy - hr_, hx + 1.2 * hr_, hy + hr_], fill=1)
    for fx in (-0.28, 0.28):
        lx = x + fx * bw
        d.line([(lx, bottom - 0.3 * bh), (lx + r.uniform(-0.1, 0.1) * bh, y)], fill=1, width=lw)
    cv.paint_thing(e, img)
    cv.feet.append((x, y, bw * 0.6))


def draw_study_pole(cv: Canvas, g: Ground, r: np.random.Generator, x: float, y: float) -> None:
    """A v2 pole at ``(x, y)``: a vertical bar 4-24 px wide (log-uniform 4-20 px times the
    perspective), 8-42 cells tall; 40 % have a lamp arm (half as wide, >= 4 px) and a lamp head."""
    C, p = CELL, study_persp(g, y)
    w = _clip_px(math.exp(r.uniform(math.log(4), math.log(20))) * p, 4, 24)
    top = y - r.uniform(12, 30) * C * p
    e = cv.new_element(POLE, True)
    img, d = cv.scratch()
    _bar(d, x, top, y, w)
    if r.random() < 0.4:
        arm = r.uniform(2, 5) * C * p * (1 if r.random() < 0.5 else -1)
        aw = max(4, w // 2)
        d.rectangle([int(round(min(x, x + arm))), int(round(top)), int(round(max(x, x + arm))),
                     int(round(top)) + aw - 1], fill=1)
        _bar(d, x + arm, top, top + r.uniform(0.6, 1.2) * C, _clip_px(r.uniform(0.8, 1.5) * C, 6, 12))
    cv.paint_thing(e, img)
    cv.feet.append((x, y, 2 * w))


def draw_study_fence(cv: Canvas, g: Ground, r: np.random.Generator, x: float, y: float) -> None:
    """A v2 fence at ``(x, y)``: 12-30 cells wide, 3-7 cells tall; a lattice (:func:`_lattice`) of
    4-8 px lines 2-5 cells apart (times the perspective), a 6-12 px top rail and two 8-24 px end posts."""
    C, p = CELL, study_persp(g, y)
    fw = r.uniform(12, 30) * C * min(p, 1.0)
    fh = r.uniform(3, 7) * C * p
    x0, x1, top = x - fw / 2, x + fw / 2, y - fh
    spacing = r.uniform(2, 5) * C * p
    lw = int(r.integers(4, 9))
    e = cv.new_element(FENCE, True)
    img, d = cv.scratch()
    img, d = _lattice(r, img, d, (x0, x1, top, y, fh), spacing, lw)
    d.line([(x0, top), (x1, top)], fill=1, width=int(r.integers(6, 13)))
    post = _clip_px(r.uniform(8, 16) * p, 8, 24)
    _bar(d, x0, top, y, post)
    _bar(d, x1, top, y, post)
    cv.paint_thing(e, img)
    cv.feet.append((x, y, fw / 2))


def draw_study_wheel(cv: Canvas, g: Ground, r: np.random.Generator, x: float, y: float) -> None:
    """One v2 wheel, or a bicycle-like pair, at ``(x, y)``: radius 2.5-5 cells times the perspective,
    rim 4-16 px, 3-6 spokes 4-6 px wide, a hub >= 0.6 cells in radius (one instance per wheel)."""
    C, p = CELL, study_persp(g, y)
    rad = r.uniform(2.5, 5.0) * C * p
    rim, spoke = _clip_px(r.uniform(4, 12) * p, 4, 16), int(r.integers(4, 7))
    n = 2 if r.random() < 0.55 else 1
    gap = r.uniform(2.2, 3.0) * rad * (1 if r.random() < 0.5 else -1)
    for k in range(n):
        cx, cy = x + k * gap, y - rad
        e = cv.new_element(WHEEL, True)
        img, d = cv.scratch()
        d.ellipse([cx - rad, cy - rad, cx + rad, cy + rad], outline=1, width=rim)
        spokes, phase = int(r.choice([3, 4, 5, 6])), r.uniform(0, 2 * math.pi)
        for s in range(spokes):
            a = phase + 2 * math.pi * s / spokes
            d.line([(cx, cy), (cx + rad * math.cos(a), cy + rad * math.sin(a))], fill=1, width=spoke)
        hub = max(0.6 * C, 0.15 * rad)
        d.ellipse([cx - hub, cy - hub, cx + hub, cy + hub], fill=1)
        cv.paint_thing(e, img)
    cv.feet.append((x + (n - 1) * gap / 2, y, abs(gap) / 2 * (n - 1) + rad))


def draw_study_person(cv: Canvas, g: Ground, r: np.random.Generator, x: float, y: float) -> None:
    """A v2 stick figure at ``(x, y)``, 14-26 cells tall times the perspective: a disc head 1.2-3
    cells across (11 % of the height), an 8-24 px torso (6 %), 4-14 px legs (4 %) and 4-12 px arms (3 %)."""
    C, p = CELL, study_persp(g, y)
    h = r.uniform(14, 26) * C * p
    head = min(max(0.055 * h, 0.6 * C), 1.5 * C)
    neck, hip = y - h + 2 * head, y - 0.47 * h
    lean = r.uniform(-0.06, 0.06) * h
    leg_w = _clip_px(0.04 * h * r.uniform(0.8, 1.2), 4, 14)
    arm_w = _clip_px(0.03 * h * r.uniform(0.8, 1.2), 4, 12)
    e = cv.new_element(PERSON, True)
    img, d = cv.scratch()
    d.ellipse([x + lean - head, y - h, x + lean + head, y - h + 2 * head], fill=1)
    d.line([(x + lean, neck), (x, hip)], fill=1, width=_clip_px(0.06 * h, 8, 24))
    _person_limbs(d, r, x, y, h, hip, neck, lean, leg_w, lambda: arm_w)
    cv.paint_thing(e, img)
    cv.feet.append((x, y, 0.15 * h))


# kind -> (drawing function, possible counts per image, their probabilities), as OBJECT_KINDS
STUDY_OBJECT_KINDS = {
    "animal": (draw_study_animal, 4, [0.3, 0.35, 0.25, 0.1]),
    "pole": (draw_study_pole, 6, [0.1, 0.2, 0.3, 0.2, 0.1, 0.1]),
    "fence": (draw_study_fence, 3, [0.4, 0.45, 0.15]),
    "wheel": (draw_study_wheel, 3, [0.4, 0.4, 0.2]),
    "person": (draw_study_person, 5, [0.15, 0.3, 0.3, 0.15, 0.1]),
}
