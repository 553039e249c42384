"""Rendering one image of a synthetic identity in one modality: the figure's shapes, each
modality's style (what it keeps of the identity), background clutter and per-shot nuisance."""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from reid_core.data.synth_identity import COLOURS, IR_BRIGHT, RGB, Identity
from reid_core.modality import Modality

# per-image nuisance: framing, body width, leg and arm spread, stripe phase
_FRAMING = {"dx": (-0.06, 0.06), "dy": (-0.03, 0.03), "scale": (0.88, 1.04), "build": (0.92, 1.08)}
POSE_RANGES = _FRAMING | {"legs": (0.0, 0.06), "arms": (0.0, 0.05), "phase": (0.0, 1.0)}
_SCALE = 2  # draw at twice the size and downsample: cheap anti-aliasing for thin lines
_PAPER = (246, 240, 226)  # colour-pencil paper; sketches are on white
Pose = dict[str, float]


def _hsv(hue: float, sat: float, val: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb((hue % 360) / 360, min(max(sat, 0), 1), min(max(val, 0), 1))
    return (round(r * 255), round(g * 255), round(b * 255))


def _grey(level: float) -> RGB:
    g = round(min(max(level, 0.0), 1.0) * 255)
    return (g, g, g)


def _pose(rng: np.random.Generator) -> Pose:
    pose = {k: rng.uniform(lo, hi) for k, (lo, hi) in POSE_RANGES.items()}
    return pose | {"side": 1.0 if rng.random() < 0.5 else -1.0}  # which way the person faces


@dataclass(frozen=True)
class _Shape:
    kind: str  # poly | ellipse | chord | line | pattern
    part: str  # key into a style's fills
    points: tuple[tuple[float, float], ...]  # in person units: x from the midline, y from the top
    width: float = 0.0


def _quad(x0: float, x1: float, y0: float, y1: float) -> tuple[tuple[float, float], ...]:
    return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))


def _legs(ident: Identity, pose: Pose, b: float) -> list[_Shape]:
    """Legs, lower garment and shoes; the lower garment's silhouette is an identity attribute."""
    top, knee, ankle = 0.49, 0.68, 0.93

    def leg(sgn: int, y0: float, y1: float, part: str) -> _Shape:
        def at(y: float) -> tuple[float, float]:
            t = (y - top) / (ankle - top)
            return sgn * (0.05 * b + pose["legs"] * t), 0.048 * b - 0.012 * t

        (c0, h0), (c1, h1) = at(y0), at(y1)
        return _Shape("poly", part, ((c0 - h0, y0), (c0 + h0, y0), (c1 + h1, y1), (c1 - h1, y1)))

    shapes: list[_Shape] = []
    for sgn in (-1, 1):
        if ident.lower_type == "trousers":
            shapes.append(leg(sgn, top, ankle, "lower"))
        else:
            shapes.append(leg(sgn, knee - 0.02, ankle, "skin"))
            if ident.lower_type == "shorts":
                shapes.append(leg(sgn, top, knee, "lower"))
        x = sgn * (0.05 * b + pose["legs"])
        shapes.append(_Shape("ellipse", "shoe", ((x - 0.045, ankle - 0.01), (x + 0.045, 0.975))))
    if ident.lower_type == "skirt":
        hem = 0.16 * b + pose["legs"] / 2
        skirt = ((-0.1 * b, top), (0.1 * b, top), (hem, knee), (-hem, knee))
        shapes.append(_Shape("poly", "lower", skirt))
    return shapes


def _figure(ident: Identity, pose: Pose) -> list[_Shape]:
    """The shapes of one person in drawing order (back to front)."""
    b = pose["build"]
    shapes: list[_Shape] = []
    if ident.long_hair:
        shapes.append(_Shape("poly", "hair_long", _quad(-0.07, 0.07, 0.03, 0.25)))
    if ident.bag == "backpack":
        shapes.append(_Shape("poly", "bag", _quad(-0.12 * b, 0.19 * b, 0.17, 0.47)))
    shapes += _legs(ident, pose, b)
    torso = ((-0.13 * b, 0.155), (0.13 * b, 0.155), (0.105 * b, 0.5), (-0.105 * b, 0.5))
    shapes.append(_Shape("poly", "skin", _quad(-0.025, 0.025, 0.11, 0.17)))
    shapes += [_Shape("poly", "upper", torso), _Shape("pattern", "upper", torso)]
    for sgn in (-1, 1):
        sx, hx = sgn * 0.125 * b, sgn * (0.15 * b + pose["arms"])
        arm = ((sx - 0.035, 0.165), (sx + 0.035, 0.165), (hx + 0.03, 0.46), (hx - 0.03, 0.46))
        shapes.append(_Shape("poly", "upper", arm))
        shapes.append(_Shape("ellipse", "skin", ((hx - 0.028, 0.45), (hx + 0.028, 0.505))))
    shapes.append(_Shape("ellipse", "skin", ((-0.052, 0.007), (0.052, 0.143))))
    shapes.append(_Shape("chord", "hair", ((-0.056, 0.003), (0.056, 0.15))))
    if ident.hat:
        shapes.append(_Shape("chord", "hat", ((-0.06, -0.012), (0.06, 0.12))))
        shapes.append(_Shape("poly", "hat", _quad(-0.06, 0.11, 0.044, 0.062)))
    if ident.bag == "backpack":
        for sgn in (-1, 1):
            strap = ((sgn * 0.075 * b, 0.16), (sgn * 0.085 * b, 0.4))
            shapes.append(_Shape("line", "strap", strap, 0.022))
    elif ident.bag == "shoulder bag":
        shapes.append(_Shape("line", "strap", ((-0.11 * b, 0.16), (0.12 * b, 0.47)), 0.02))
        shapes.append(_Shape("poly", "bag", _quad(0.1 * b, 0.21 * b, 0.43, 0.56)))
    return shapes


@dataclass(frozen=True)
class _Style:
    """How a modality paints a figure: a part without a fill is not drawn."""

    fills: dict[str, RGB]
    stripe: RGB | None  # colour of the torso pattern; None drops the pattern
    stripe_width: float  # fraction of the pattern period (sketch: a line)
    outline: RGB | None = None
    line: float = 0.0  # outline width as a fraction of the person's height


def _vis_style(ident: Identity, rng: np.random.Generator) -> _Style:
    def garment(i: int) -> RGB:
        sat, val = (0.88, 0.5) if ident.dark[i] else (0.45, 0.95)
        return _hsv(ident.hues[i] + rng.uniform(-3, 3), sat + rng.uniform(-0.05, 0.05), val)

    hue, looks = ident.hues[0], ident.looks
    stripe = _hsv(hue, 0.3, 0.97) if ident.dark[0] else _hsv(hue, 0.9, 0.3)
    fills = {"upper": garment(0), "lower": garment(1), "shoe": (35, 35, 35), **looks}
    return _Style(fills | {"hair_long": looks["hair"], "strap": looks["bag"]}, stripe, 0.5)


def _nir_style(ident: Identity, rng: np.random.Generator) -> _Style:
    upper, lower = (
        (0.3 if ident.dark[i] else 0.76) + IR_BRIGHT.get(COLOURS[ident.colours[i]], 0.0)
        for i in (0, 1)
    )
    # IR flattens hair and hat colour to dull greys; skin reflects near-infrared whatever its tone
    hair = _grey(0.15 + 0.5 * sum(ident.looks["hair"]) / 765)
    levels = {"upper": upper, "lower": lower, "skin": 0.85, "shoe": 0.15, "bag": 0.25}
    fills = {k: _grey(v) for k, v in levels.items()} | {"hair": hair, "hair_long": hair}
    fills |= {"strap": fills["bag"], "hat": _grey(0.2 + 0.6 * sum(ident.looks["hat"]) / 765)}
    return _Style(fills, _grey(upper - 0.35 if upper > 0.55 else upper + 0.4), 0.5)


def _sk_style(ident: Identity, rng: np.random.Generator) -> _Style:
    ink = _grey(rng.uniform(0.0, 0.2))
    paper = dict.fromkeys(("skin", "upper", "lower", "bag", "hat"), (255, 255, 255))
    dark = dict.fromkeys(("hair", "hair_long", "shoe", "strap"), ink)  # shaded solid, as drawn
    return _Style(paper | dark, ink, 0.0, ink, rng.uniform(0.018, 0.025))


def _cp_style(ident: Identity, rng: np.random.Generator) -> _Style:
    # one lightness whatever the garment's: a pencil drawing keeps the hue only; no accessories
    upper, lower = (
        _hsv(h + rng.uniform(-10, 10), rng.uniform(0.5, 0.7), rng.uniform(0.82, 0.95))
        for h in ident.hues
    )
    fills = {"upper": upper, "lower": lower, "skin": (240, 200, 170), "hair": (110, 80, 60)}
    return _Style(fills | {"shoe": (120, 120, 120)}, None, 0.0, (95, 85, 75), 0.01)


STYLES = {Modality.VIS: _vis_style, Modality.NIR: _nir_style, Modality.SK: _sk_style}
STYLES[Modality.CP] = _cp_style


def _draw_figure(img: Image.Image, ident: Identity, pose: Pose, style: _Style) -> None:
    """Paint the figure on `img` (canvas pixels) in `style`."""
    wc, hc = img.size
    u = hc * 0.86 * pose["scale"]
    cx, top = wc / 2 + pose["dx"] * wc, (hc - u) / 2 + pose["dy"] * hc

    def px(points: tuple[tuple[float, float], ...]) -> list[tuple[float, float]]:
        return [(cx + pose["side"] * x * u, top + y * u) for x, y in points]

    draw, lw = ImageDraw.Draw(img), round(style.line * u)
    for s in _figure(ident, pose):
        fill = style.fills.get(s.part)
        if s.kind == "pattern":
            if style.stripe is not None and ident.pattern != "plain":
                grid = (0.08 * u, pose["phase"], max(lw, round(0.08 * u * style.stripe_width)))
                _draw_pattern(img, px(s.points), ident.pattern, style.stripe, grid)
        elif fill is None:
            continue
        elif s.kind == "line":
            draw.line(px(s.points), fill=fill, width=max(1, round(s.width * u)))
        elif s.kind == "poly":
            draw.polygon(px(s.points), fill=fill, outline=style.outline, width=lw)
        else:
            (x0, y0), (x1, y1) = px(s.points)
            box = (min(x0, x1), y0, max(x0, x1), y1)
            if s.kind == "ellipse":
                draw.ellipse(box, fill=fill, outline=style.outline, width=lw)
            else:
                draw.chord(box, 180, 360, fill=fill, outline=style.outline, width=lw)


def _draw_pattern(img: Image.Image, torso: list, pattern: str, colour: RGB, grid: tuple) -> None:
    """Stripes or checks clipped to the torso polygon; `grid` is (period, phase, band) in px."""
    period, phase, band = grid
    span = max(0.0, band - 1)  # at tiny sizes a band is under one pixel wide: draw it as one
    clip = Image.new("L", img.size, 0)
    ImageDraw.Draw(clip).polygon(torso, fill=255)
    bands = Image.new("L", img.size, 0)
    draw = ImageDraw.Draw(bands)
    xs, ys = [p[0] for p in torso], [p[1] for p in torso]
    if pattern in ("striped", "checked"):
        for y in np.arange(min(ys) + phase * period, max(ys), period):
            draw.rectangle((min(xs), y, max(xs), y + span), fill=255)
    if pattern in ("vertically striped", "checked"):
        for x in np.arange(min(xs) + phase * period, max(xs), period):
            draw.rectangle((x, min(ys), x + span, max(ys)), fill=255)
    img.paste(colour, mask=ImageChops.multiply(clip, bands))


def _background(modality: Modality, rng: np.random.Generator, wc: int, hc: int) -> Image.Image:
    """Clutter behind the person; never correlated with the identity."""
    if modality in (Modality.SK, Modality.CP):
        paper = (255, 255, 255) if modality is Modality.SK else _PAPER
        img = Image.new("RGB", (wc, hc), paper)
        for _ in range(int(rng.integers(0, 3))):  # stray construction strokes
            pts = rng.uniform(0, 1, 4) * (wc, hc, wc, hc)
            ImageDraw.Draw(img).line(list(pts), fill=_grey(rng.uniform(0.7, 0.9)), width=1)
        return img
    grey = modality is Modality.NIR
    base = rng.uniform(0.25, 0.75, (3, 2, 1)) + rng.uniform(-0.12, 0.12, (3, 2, 3)) * (not grey)
    small = Image.fromarray((np.clip(base, 0, 1) * 255).astype(np.uint8))
    img = small.resize((wc, hc), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 7))):
        level = rng.uniform(0.15, 0.85)
        tint = (0.0, 0.0, 0.0) if grey else rng.uniform(-0.12, 0.12, 3)
        colour = tuple(round(min(max(level + t, 0), 1) * 255) for t in tint)
        x0, y0 = rng.uniform(-0.2, 1.0) * wc, rng.uniform(-0.2, 1.0) * hc
        box = (x0, y0, x0 + rng.uniform(0.1, 0.6) * wc, y0 + rng.uniform(0.05, 0.5) * hc)
        (draw.rectangle if rng.random() < 0.6 else draw.ellipse)(box, fill=colour)
    return img


def _pencil_texture(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Diagonal hatching: colour fades toward the paper between strokes."""
    arr = np.asarray(img, dtype=np.float32)
    noise = rng.random(arr.shape[:2], dtype=np.float32)
    strokes = sum(np.roll(noise, (k, k), axis=(0, 1)) for k in range(6)) / 6
    strength = 0.65 + 0.35 * np.clip((strokes - 0.5) / 0.12 * 0.5 + 0.5, 0, 1)
    paper = np.asarray(_PAPER, dtype=np.float32)
    out = paper + (arr - paper) * strength[..., None]
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def _finish(
    img: Image.Image, modality: Modality, rng: np.random.Generator, size: tuple[int, int]
) -> Image.Image:
    """Downsample, then blur, lighting and sensor noise: what differs between two shots."""
    h, w = size
    grey = modality in (Modality.NIR, Modality.SK)
    if modality is Modality.CP:
        img = _pencil_texture(img, rng)
    img = img.convert("L") if grey else img
    img = img.resize((w, h), Image.Resampling.BOX)
    blur = {Modality.VIS: (0, 0.6), Modality.NIR: (0.3, 0.9)}.get(modality, (0.0, 0.4))
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(*blur)))
    arr: np.ndarray = np.asarray(img, dtype=np.float64)
    if modality is Modality.VIS:
        arr = arr * rng.uniform(0.78, 1.12) * rng.uniform(0.94, 1.06, 3)
    elif modality is Modality.NIR:
        arr = (arr - 128) * rng.uniform(0.8, 1.15) + 128 * rng.uniform(0.85, 1.15)
    sigma = {Modality.VIS: (2, 6), Modality.NIR: (3, 7)}.get(modality, (0.5, 2))
    arr = arr + rng.normal(0, rng.uniform(*sigma), arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def render(
    modality: Modality, ident: Identity, rng: np.random.Generator, size: tuple[int, int]
) -> Image.Image:
    """One image of `ident` in `modality` at `size` (height, width); nir and sk are mode L."""
    h, w = size
    img = _background(modality, rng, w * _SCALE, h * _SCALE)
    _draw_figure(img, ident, _pose(rng), STYLES[modality](ident, rng))
    return _finish(img, modality, rng, size)
