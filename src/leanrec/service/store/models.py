"""The log of served model folders: the newest active one is what a restart serves again."""

from __future__ import annotations

import json
import time

from sqlalchemy import select, update

from ..schema import models
from .base import Database


class ModelRows(Database):
    def record_model(self, path: str, kind: str, meta: dict) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(models).values(active=False))
            conn.execute(models.insert().values(path=path, kind=kind, meta=json.dumps(meta, default=str),
                                                loaded_at=time.time(), active=True))

    def active_model_path(self) -> str | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(models.c.path).where(models.c.active.is_(True))
                               .order_by(models.c.id.desc())).first()
        return None if row is None else row[0]
