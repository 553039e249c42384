"""Disk full while a checkpoint is written (ENOSPC simulated on the write).

The write goes to a temporary file beside the checkpoint and replaces it with one os.replace only
when complete, so the previous checkpoint survives intact and the partial file is removed; the
run stops with one `error:` line (exit 1) naming the checkpoint.
"""

from __future__ import annotations

import errno
import io

import pytest
import torch

from reid_core.training import checkpoint as ckpt_mod
from reid_core.training.checkpoint import load_checkpoint
from tests.faults.conftest import SHORT, reid

pytestmark = pytest.mark.integration
REAL_SAVE = torch.save


class _FullDisk(io.RawIOBase):
    """A file that takes `room` bytes, then fails like a full disk."""

    def __init__(self, fh, room: int) -> None:
        self.fh, self.room = fh, room

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if self.room < len(data):
            self.fh.write(bytes(data[: self.room]))
            self.room = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.fh.write(data)


def _oserror_save(obj, path):  # the write itself raises ENOSPC after half the bytes
    buf = io.BytesIO()
    REAL_SAVE(obj, buf)
    with open(path, "wb") as fh:
        fh.write(buf.getvalue()[: len(buf.getvalue()) // 2])
    raise OSError(errno.ENOSPC, "No space left on device")


def _torch_save(obj, path):  # torch's own writer meets the full disk (it raises RuntimeError)
    with open(path, "wb") as fh:
        REAL_SAVE(obj, _FullDisk(fh, room=4096))


@pytest.mark.parametrize("failing_save", [_oserror_save, _torch_save], ids=["oserror", "torch"])
def test_disk_full_keeps_the_previous_checkpoint(data_root, tmp_path, monkeypatch, capfd,
                                                 failing_save):  # fmt: skip
    calls = []

    def save(obj, path, *args, **kwargs):
        calls.append(path)
        if len(calls) <= 2:  # epoch 1: best.pt, then last.pt
            return REAL_SAVE(obj, path, *args, **kwargs)
        return failing_save(obj, path)

    monkeypatch.setattr(ckpt_mod.torch, "save", save)
    out = tmp_path / "run"
    sets = [*SHORT, "train.epochs=3"]
    code = reid(
        "train", "--preset", "micro", "--data", data_root, "--out", out, "--no-track",
        *[a for s in sets for a in ("--set", s)],
    )  # fmt: skip
    err = capfd.readouterr().err.strip().splitlines()
    assert code == 1 and len(calls) == 3
    assert err[-1].startswith("error: ") and "cannot write checkpoint" in err[-1]
    assert "the previous checkpoint is kept" in err[-1] and "Traceback" not in "\n".join(err)
    folder = out / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["best.pt", "last.pt"]  # no partial file
    last = load_checkpoint(folder / "last.pt")
    assert last["epoch"] == 1 and load_checkpoint(folder / "best.pt")["epoch"] == 1
    # and the survivor is a working checkpoint: the run resumes from it once the disk has room
    monkeypatch.setattr(ckpt_mod.torch, "save", REAL_SAVE)
    code = reid(
        "train", "--preset", "micro", "--data", data_root, "--out", out, "--no-track",
        "--resume", *[a for s in sets for a in ("--set", s)],
    )  # fmt: skip
    assert code == 0 and load_checkpoint(folder / "last.pt")["epoch"] == 3
