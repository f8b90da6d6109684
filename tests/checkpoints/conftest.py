"""Checkpoint fixtures (the helpers live in edm_pickles.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def payload(tmp_path: Path) -> tuple[Path, str]:
    """(marker file, Python source that creates it): what a malicious checkpoint would run."""
    marker = tmp_path / "pwned"
    return marker, f"open({str(marker)!r}, 'w').close()"
