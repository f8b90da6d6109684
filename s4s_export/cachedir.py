"""The one cache root: downloaded weights, TensorRT engines and timing caches, fetched wheels (torch-free base).

`$S4S_CACHE`, else `~/.cache/s4s-export`. The older name `S4S_EXPORT_CACHE` still works when
`S4S_CACHE` is unset, with a one-line deprecation note on stderr (once per process).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

CACHE_ENV = "S4S_CACHE"
DEPRECATED_CACHE_ENV = "S4S_EXPORT_CACHE"
DEFAULT_CACHE = "~/.cache/s4s-export"
_noted = False


def cache_root() -> Path:
    """The cache folder (not created here)."""
    global _noted
    value = os.environ.get(CACHE_ENV)
    if not value and os.environ.get(DEPRECATED_CACHE_ENV):
        value = os.environ[DEPRECATED_CACHE_ENV]
        if not _noted:
            _noted = True
            print(f"note: {DEPRECATED_CACHE_ENV} is deprecated; set {CACHE_ENV} instead (same meaning)",
                  file=sys.stderr)
    return Path(value or DEFAULT_CACHE).expanduser()
