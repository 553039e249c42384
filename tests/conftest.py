"""Shared fixtures: every test builds its own tiny data in tmp_path; nothing is downloaded."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMNIREID_CACHE", "")  # tests never share an index cache on disk


@pytest.fixture
def micro_cfg():
    from reid_core.config import load_config

    return load_config(preset="micro")
