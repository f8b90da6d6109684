"""Where the runtime keeps reusable files: $S4S_CACHE, default ~/.cache/s4s-export."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("S4S_CACHE", "~/.cache/s4s-export")).expanduser()
