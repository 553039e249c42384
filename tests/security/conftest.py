"""Helpers for hostile-input tests: the real `reid` in a subprocess under a memory and time
bound, and a check that nothing was written."""

from __future__ import annotations

import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

MEMORY_BOUND = 1 << 30  # address space of the child: a bomb dies here, not the machine
TIME_BOUND = 60  # seconds: far above a refusal (about one), far below a hang


@dataclass
class Result:
    code: int
    out: str
    err: str


def _bound_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BOUND, MEMORY_BOUND))


def reid_bounded(*args: object, cwd: Path, env: dict[str, str] | None = None) -> Result:
    """`reid ARGS` in a child process limited to `MEMORY_BOUND` bytes and `TIME_BOUND` s; a
    hang or a blow-up fails the test instead of eating the machine."""
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from studies.cli import entry; entry()",
            *map(str, args),
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=TIME_BOUND,
        preexec_fn=_bound_memory,
        env=env,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def assert_one_line_refusal(result: Result, *needles: str) -> str:
    """Exit 2, exactly one `error:` line on stderr naming every needle, no traceback."""
    assert result.code == 2, (result.code, result.err[-2000:])
    assert result.err.startswith("error: ") and result.err.count("\n") == 1, result.err[-2000:]
    assert "Traceback" not in result.err + result.out
    for needle in needles:
        assert needle in result.err, (needle, result.err)
    return result.err


def snapshot(path: Path) -> dict[str, tuple[int, int]]:
    """Size and mtime of everything under `path` that can be stat'ed without following links."""
    return {
        str(p.relative_to(path)): (p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in path.rglob("*")
    }


# ------------------------------------------------------------------------------ image bombs
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int, height: int) -> bytes:
    """A valid PNG header declaring `width x height` RGB pixels, with almost no data."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def jpeg_bomb(width: int, height: int) -> bytes:
    """A real JPEG whose frame header (SOF0) is patched to `width x height`."""
    import io
    import struct

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (9, 9, 9)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_bomb(width: int, height: int) -> bytes:
    """A GIF whose logical screen and only frame claim `width x height`."""
    import struct

    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0)
    return screen + frame + b"\x02\x02\x44\x01\x00\x3b"


def bmp_bomb(width: int, height: int) -> bytes:
    """A BMP header declaring `width x height` 24-bit pixels, with no pixel data."""
    import struct

    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info), 0, 0, 14 + len(info)) + info


def tiff_bomb(width: int, height: int) -> bytes:
    """A little-endian TIFF whose one IFD declares `width x height` 8-bit grey pixels."""
    import struct

    tags = [
        (256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1),
        (273, 4, 8 + 2 + 12 * 9 + 4), (277, 3, 1), (278, 4, height), (279, 4, 1),
    ]  # fmt: skip
    ifd = struct.pack("<H", len(tags))
    for tag, kind, value in tags:
        ifd += struct.pack("<HHI", tag, kind, 1) + struct.pack("<I", value)
    return b"II*\0" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + b"\0"


BOMBS = {"png": png_bomb, "jpeg": jpeg_bomb, "gif": gif_bomb, "bmp": bmp_bomb, "tiff": tiff_bomb}
