"""The real data sets the tests read: ``$IR_DATA_DIR`` or ../shared/data; tests skip, naming why, where absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHIPPED = Path(os.environ.get("IR_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")


def shipped(subfolder: str | None = None) -> Path:
    """The data folder, after checking that it (and ``subfolder`` in it) exists; else skip the test."""
    folder = SHIPPED if subfolder is None else SHIPPED / subfolder
    if not folder.is_dir():
        pytest.skip(f"no data folder {folder}: set IR_DATA_DIR to the folder holding multi30k/, sst2/, squad/, mrpc/")
    return SHIPPED
