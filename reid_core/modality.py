"""The five modalities: folders, channels and normalisation, routed by enum (never by string)."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from reid_core.errors import ReidError

# CLIP's RGB normalisation. 1-channel modalities are normalised with the channel means of these,
# so the 1x1 stem adapter can be initialised to reproduce CLIP's RGB normalisation of a grey image.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
GREY_MEAN = (sum(CLIP_MEAN) / 3,)
GREY_STD = (sum(CLIP_STD) / 3,)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class Modality(StrEnum):
    """A modality; the declaration order is the canonical order of mask columns and set names."""

    VIS = "vis"
    NIR = "nir"
    CP = "cp"
    SK = "sk"
    TEXT = "text"

    @property
    def is_image(self) -> bool:
        return self is not Modality.TEXT

    @property
    def channels(self) -> int:
        """Input channels: infrared and sketch are 1-channel, RGB and colour pencil 3-channel."""
        if self is Modality.TEXT:
            raise ValueError("text has no image channels")
        return 1 if self in (Modality.NIR, Modality.SK) else 3

    @property
    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return (CLIP_MEAN, CLIP_STD) if self.channels == 3 else (GREY_MEAN, GREY_STD)

    @property
    def column(self) -> int:
        """Column of this modality in a modality mask `[batch, len(Modality)]`."""
        return ALL_MODALITIES.index(self)

    @property
    def set_name(self) -> str:
        """The name ORBench's evaluation file uses (`NIR`, `CP`, `SK`, `TEXT`, `RGB`)."""
        return "RGB" if self is Modality.VIS else self.value.upper()

    @classmethod
    def parse(cls, name: str) -> Modality:
        """Parse `vis`/`rgb`/`nir`/`cp`/`sk`/`text` in any case; an unknown name raises."""
        key = name.strip().lower()
        key = {"rgb": "vis", "ir": "nir"}.get(key, key)
        try:
            return cls(key)
        except ValueError:
            allowed = ", ".join(m.value for m in cls)
            raise ReidError(f"unknown modality {name!r} (allowed: {allowed})") from None


ALL_MODALITIES: tuple[Modality, ...] = tuple(Modality)
IMAGE_MODALITIES: tuple[Modality, ...] = tuple(m for m in Modality if m.is_image)
QUERY_MODALITIES: tuple[Modality, ...] = (Modality.NIR, Modality.CP, Modality.SK, Modality.TEXT)


def canonical(modalities: Iterable[Modality]) -> tuple[Modality, ...]:
    """Sort modalities into canonical order (nir, cp, sk, text after vis) without duplicates."""
    present = set(modalities)
    return tuple(m for m in ALL_MODALITIES if m in present)


def set_key(modalities: Iterable[Modality]) -> str:
    """Metric-name key of a query set: lowercase names joined by `_` in the given order."""
    return "_".join(m.value for m in modalities)


def parse_set_name(name: str) -> tuple[Modality, ...]:
    """Parse an ORBench set name such as `TEXT+NIR+CP` into modalities, keeping their order."""
    parts = [p for p in name.split("+")]
    if not parts or any(not p.strip() for p in parts):
        raise ReidError(f"query set name {name!r} is not of the form A+B+...")
    mods = tuple(Modality.parse(p) for p in parts)
    if len(set(mods)) != len(mods):
        raise ReidError(f"query set name {name!r} repeats a modality")
    return mods
