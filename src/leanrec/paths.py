"""Where leanrec keeps what it downloads and computes (data sets, embedding cache).

One place, so tests can point everything at a temporary folder with ``LEANREC_CACHE_DIR``.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_DIR_ENV = "LEANREC_CACHE_DIR"


def cache_dir() -> Path:
    """The user's cache folder for leanrec (``$LEANREC_CACHE_DIR`` overrides it when non-empty)."""
    override = os.environ.get(CACHE_DIR_ENV, "").strip()
    if override:
        path = Path(override).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_cache_dir("leanrec"))
    path.mkdir(parents=True, exist_ok=True)
    return path
