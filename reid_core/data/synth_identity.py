"""Synthetic identities and their captions: the attributes drawn once per person, and sentences
naming a random subset of them. Rendering lives in `synth_render`, the dataset writer in `synth`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# hues 45 degrees apart at most, so a rough pencil hue still names the class
COLOURS = ("red", "orange", "yellow", "green", "teal", "blue", "purple", "pink")
HUES = (0, 28, 55, 120, 178, 225, 275, 325)
PATTERNS = ("plain", "striped", "vertically striped", "checked")
BAGS = ("none", "backpack", "shoulder bag")
LOWER_TYPES = ("trousers", "shorts", "skirt")
IR_BRIGHT = {"green": 0.2, "teal": 0.15, "red": 0.08}  # dyes that reflect near-infrared
RGB = tuple[int, int, int]
_LOOKS = {
    "skin": [(233, 196, 160), (205, 160, 120), (160, 112, 80), (110, 76, 56)],
    "hair": [(25, 20, 18), (70, 45, 30), (150, 110, 60), (120, 120, 120)],
    "bag": [(30, 30, 30), (90, 60, 35), (40, 45, 70), (80, 80, 80)],
    "hat": [(240, 240, 235), (30, 30, 30), (200, 180, 140), (60, 70, 110)],
}


@dataclass(frozen=True)
class Identity:
    """One person. Pairs are (upper, lower) garment; `colours` index `COLOURS`; `looks` holds the
    RGB-only details (skin, hair, bag and hat colour)."""

    colours: tuple[int, int]
    dark: tuple[bool, bool]
    hues: tuple[float, float]
    pattern: str
    bag: str
    hat: bool
    long_hair: bool
    lower_type: str
    looks: dict[str, RGB]


def identity(seed: int, pid: int) -> Identity:
    """The attributes of identity `pid` (1-based) under `seed`."""
    rng = np.random.default_rng([seed, pid, 0])
    colours = (int(rng.integers(len(COLOURS))), int(rng.integers(len(COLOURS))))
    return Identity(
        colours=colours,
        dark=(bool(rng.random() < 0.5), bool(rng.random() < 0.5)),
        hues=(HUES[colours[0]] + rng.uniform(-6, 6), HUES[colours[1]] + rng.uniform(-6, 6)),
        pattern=str(rng.choice(PATTERNS)),
        bag=str(rng.choice(BAGS, p=[0.4, 0.3, 0.3])),
        hat=bool(rng.random() < 0.3),
        long_hair=bool(rng.random() < 0.4),
        lower_type=str(rng.choice(LOWER_TYPES, p=[0.5, 0.25, 0.25])),
        looks={k: v[int(rng.integers(len(v)))] for k, v in _LOOKS.items()},
    )


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def caption(ident: Identity, rng: np.random.Generator) -> str:
    """A sentence naming a random subset (at least two) of the identity's attributes."""
    keys = ("upper", "pattern", "lower", "lower_type", "bag", "hat", "hair")
    chosen = {k for k in keys if rng.random() < 0.6}
    while len(chosen) < 2:
        chosen.add(str(rng.choice(keys)))

    def colour(index: int, dark: bool) -> str:
        shade = ("dark " if dark else "light ") if rng.random() < 0.7 else ""
        return shade + COLOURS[index] + " "

    wear: list[str] = []
    extras: list[str] = []
    if {"upper", "pattern"} & chosen:
        tone = colour(ident.colours[0], ident.dark[0]) if "upper" in chosen else ""
        look = ident.pattern + " " if "pattern" in chosen else ""
        garment = str(rng.choice(["shirt", "top", "jacket", "sweater"]))
        wear.append(_article(f"{tone}{look}{garment}"))
    if {"lower", "lower_type"} & chosen:
        tone = colour(ident.colours[1], ident.dark[1]) if "lower" in chosen else ""
        kind = ident.lower_type
        if kind == "trousers":
            kind = str(rng.choice(["trousers", "pants"]))
        wear.append(_article(tone + kind) if kind == "skirt" else tone + kind)
    if "hat" in chosen:
        (wear if ident.hat else extras).append("a cap" if ident.hat else "without a hat")
    if "bag" in chosen:
        bag = {"none": "without a bag", "backpack": "carrying a backpack"}
        extras.append(bag.get(ident.bag, "with a shoulder bag"))
    if "hair" in chosen:
        extras.append("with long hair" if ident.long_hair else "with short hair")
    subject = str(rng.choice(["A person", "A pedestrian", "Someone", "A young person"]))
    if len(wear) > 1:
        wear = [", ".join(wear[:-1]) + " and " + wear[-1]]
    clauses = [f"wearing {wear[0]}"] if wear else []
    return f"{subject} {', '.join(clauses + extras)}."
