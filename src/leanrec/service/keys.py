"""API keys: a file of ``scope:key`` lines in, SHA-256 hashes in the store, never the keys.

Keys are long random tokens, not passwords, so one unsalted SHA-256 is the usual choice
(it is what lets a key be looked up by hash); what matters is that the database never
holds a usable key. ``write`` implies ``read``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

SCOPES = ("read", "write")
MIN_KEY_LEN = 16


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def read_key_file(path: str | Path) -> list[tuple[str, str]]:
    """[(scope, hash)] from a key file; blank lines and ``#`` comments are skipped. Errors
    name the file and line and never echo a key."""
    p = Path(path)
    try:
        lines = p.read_text().splitlines()
    except FileNotFoundError:
        raise FileNotFoundError(f"API key file {p} does not exist") from None
    out = []
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        scope, sep, key = line.partition(":")
        scope, key = scope.strip(), key.strip()
        if not sep or scope not in SCOPES:
            raise ValueError(f"{p}, line {n}: expected 'read:KEY' or 'write:KEY'")
        if len(key) < MIN_KEY_LEN or any(c.isspace() for c in key):
            raise ValueError(f"{p}, line {n}: the key must be at least {MIN_KEY_LEN} characters with no spaces")
        out.append((scope, hash_key(key)))
    return out


def loose_permissions(path: str | Path) -> str | None:
    """A warning when the key file can be read by its group or by others (the keys are
    bearer tokens: anyone who reads the file can write to the service), else None."""
    try:
        mode = Path(path).stat().st_mode
    except OSError:
        return None
    if mode & 0o044:
        return (f"API key file {path} is readable by group or others (mode {mode & 0o777:o}): "
                f"run chmod 600 {path}")
    return None


def allows(scope: str | None, needed: str) -> bool:
    return scope == "write" or (scope == "read" and needed == "read")
