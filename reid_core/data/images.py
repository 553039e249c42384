"""One definition of a readable image, used by `reid data check`, training, evaluation, the pyfunc
model, `reid search` and `reid serve`.

An image is opened header first (Pillow reads no pixels yet) and refused before decoding when it
is empty, not a regular file, of zero size, over `MAX_PIXELS` or of a mode OmniReID does not
convert; only then is it decoded, and converted explicitly to RGB or L (`MODES`). Everything
else is a `BadImageError` naming the image: `data.on_bad_image` decides whether training skips
it, the service answers 400 (413 for `ImageTooLargeError`).
"""

from __future__ import annotations

import io
import os
import re
import stat
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from reid_core.errors import DataError, printable

MAX_PIXELS = 40_000_000  # width x height; a decompression bomb is refused before decoding
# The formats Pillow may sniff: the dataset suffixes' (JPEG, PNG, BMP, WebP, TIFF) and GIF.
# Never EPS (Pillow runs Ghostscript, a PostScript interpreter, on it) nor any of Pillow's
# rarer parsers.
FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "TIFF", "GIF")
# Source mode -> the mode it is converted to. 16-bit grey is scaled (>> 8), not clipped as
# Pillow's own conversion would; 32-bit integer and float images (I, F), LAB, HSV and
# premultiplied modes have no agreed 8-bit meaning and are refused.
MODES: dict[str, str] = {
    "1": "L",
    "L": "L",
    "LA": "L",
    "I;16": "L",
    "I;16L": "L",
    "I;16B": "L",
    "I;16N": "L",
    "P": "RGB",
    "PA": "RGB",
    "RGB": "RGB",
    "RGBA": "RGB",
    "RGBX": "RGB",
    "CMYK": "RGB",
    "YCbCr": "RGB",
}
# Pillow warns (a second stderr line) above its own limit and raises above twice that. In
# OmniReID's processes its limit is ours, so an image nested in another (an ICO's PNG) is held to
# 2 x MAX_PIXELS while it decodes; its warning is silenced, as the header check below refuses
# every image over MAX_PIXELS, naming its size.
Image.MAX_IMAGE_PIXELS = min(Image.MAX_IMAGE_PIXELS or MAX_PIXELS, MAX_PIXELS)
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

ImageSource = Path | str | bytes


class BadImageError(DataError):
    """An image that cannot be used: undecodable, empty, of an unsupported mode or too large.
    `reason` is the part after the image's name."""

    reason = ""


class ImageTooLargeError(BadImageError):
    """An image over `MAX_PIXELS` (the service's 413)."""


def _bad(name: str, reason: str, kind: type[BadImageError] = BadImageError) -> BadImageError:
    exc = kind(f"cannot decode image {printable(name)}: {reason}")
    exc.reason = reason
    return exc


def _too_large(pixels: str) -> str:
    return f"{pixels} pixels, over the {MAX_PIXELS:,}-pixel limit"


def _bomb(exc: BaseException) -> str:
    """Pillow's own decompression-bomb refusal, in our words (it names the pixel count)."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    return _too_large(f"{int(found.group(1)):,}" if found else "too many")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return printable(text.splitlines()[0]) if text else type(exc).__name__


def _check_file(path: Path, name: str) -> None:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise _bad(name, exc.strerror or _first_line(exc)) from None
    if not stat.S_ISREG(st.st_mode):
        raise _bad(name, "not a regular file")
    if st.st_size == 0:
        raise _bad(name, "zero-byte file")


def open_image(source: ImageSource, name: str | None = None) -> Image.Image:
    """The image's header, checked (size, pixel count, mode) but not decoded; the caller closes
    it. `source` is a path or the file's bytes; `name` is what messages call it."""
    name = name if name is not None else str(source) if not isinstance(source, bytes) else "image"
    if isinstance(source, bytes):
        if not source:
            raise _bad(name, "zero-byte file")
        fp: Path | io.BytesIO = io.BytesIO(source)
    else:
        fp = Path(source)
        _check_file(fp, name)
    try:
        img = Image.open(fp, formats=FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bad(name, _bomb(exc), ImageTooLargeError) from None
    except UnidentifiedImageError:
        raise _bad(name, f"not an image format OmniReID reads ({', '.join(FORMATS)})") from None
    except Exception as exc:  # Pillow's plugins raise OSError, SyntaxError, ValueError, ...
        raise _bad(name, _first_line(exc)) from None
    try:
        _check_header(img, name)
    except BadImageError:
        img.close()
        raise
    return img


def _check_header(img: Image.Image, name: str) -> None:
    width, height = img.size
    if width < 1 or height < 1:
        raise _bad(name, f"image size {width}x{height}")
    if width * height > MAX_PIXELS:
        raise _bad(name, _too_large(f"{width}x{height} = {width * height:,}"), ImageTooLargeError)
    if img.mode not in MODES:
        raise _bad(
            name,
            f"image mode {printable(img.mode)} is not supported (supported: {', '.join(MODES)})",
        )


def _convert(img: Image.Image) -> Image.Image:
    """The decoded image in RGB or L (see `MODES`)."""
    target = MODES[img.mode]
    if img.mode.startswith("I;16"):
        import numpy as np

        grey = (np.asarray(img).astype(np.uint16) >> 8).astype(np.uint8)
        return Image.fromarray(grey)
    return img if img.mode == target else img.convert(target)


def load_image(source: ImageSource, name: str | None = None) -> Image.Image:
    """Open, check, fully decode and convert an image (format sniffed from the bytes, not the
    suffix); any problem is a `BadImageError` naming it."""
    img = open_image(source, name)
    label = name if name is not None else str(source) if not isinstance(source, bytes) else "image"
    try:
        with img:  # leaving the block closes the file; the decoded pixels stay
            # load() decodes now, so a truncated file fails here, naming it, not in a transform
            img.load()
            _check_header(img, label)  # a container (ICO) may decode to another size
            return _convert(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bad(label, _bomb(exc), ImageTooLargeError) from None
    except Exception as exc:  # OSError, ValueError, SyntaxError, struct.error, MemoryError...
        raise _bad(label, _first_line(exc)) from None


def image_problem(path: Path, quick: bool = False) -> str | None:
    """None when training could use the image at `path`, else why not (`reid data check`):
    the header checks, and with `quick=False` the same decode and conversion as training."""
    try:
        if quick:
            open_image(path).close()
        else:
            load_image(path).close()
    except BadImageError as exc:
        return exc.reason
    return None
