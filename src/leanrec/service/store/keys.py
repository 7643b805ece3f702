"""API keys, stored as SHA-256 hashes with their scope (the rules are :mod:`leanrec.service.keys`')."""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy import select

from ..schema import api_keys
from .base import Database


class KeyRows(Database):
    def replace_api_keys(self, entries: Sequence[tuple[str, str]]) -> None:
        """Make the stored keys exactly ``(scope, sha256 hex)`` entries (the key file rules)."""
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(api_keys.delete())
            if entries:
                conn.execute(api_keys.insert(), [{"key_hash": h, "scope": s, "created_at": now} for s, h in entries])

    def api_key_scopes(self) -> dict[str, str]:
        with self.engine.connect() as conn:
            return {h: s for h, s in conn.execute(select(api_keys.c.key_hash, api_keys.c.scope))}
