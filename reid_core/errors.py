"""User-facing errors: the CLI prints their message on one line and exits with `exit_code`."""

from __future__ import annotations

# Format characters that reorder text on a terminal (bidi controls); `str.isprintable` already
# refuses them (category Cf), listed here so a reader sees why the escape matters.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable(text: object) -> str:
    """`text` with every control, format (bidi), separator and other non-printable character
    escaped (`\\n`, `\\x1b`, `\\u202e`), and a byte that was not UTF-8 (a surrogate escape in a
    file name) shown as `\\xff`: a user's name can neither break a message in two nor disguise
    it. Idempotent: an escaped text is printable."""
    s = str(text)
    if s.isprintable():
        return s
    out = []
    for ch in s:
        if ch.isprintable() and ch not in _BIDI:
            out.append(ch)
        elif "\udc80" <= ch <= "\udcff":
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        else:
            out.append(ch.encode("unicode_escape", "backslashreplace").decode("ascii"))
    return "".join(out)


class ReidError(Exception):
    """A mistake in the user's input (file, key or value); never shown with a traceback. Its
    message is made printable (see `printable`), so it is always one line."""

    exit_code = 2

    def __init__(self, *args: object) -> None:
        if args and isinstance(args[0], str):
            args = (printable(args[0]), *args[1:])
        super().__init__(*args)


class ConfigError(ReidError):
    """A config file, preset or override that does not validate."""


class DataError(ReidError):
    """A dataset root, annotation, evaluation file or image that cannot be used."""


class CheckpointError(ReidError):
    """A checkpoint that is missing, corrupt or from another architecture."""
