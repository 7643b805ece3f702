"""Versioned schema migrations (Alembic), run programmatically at start-up.

``upgrade(engine)`` brings any store to the newest revision; ``current(engine)`` says which
revision a store is at. The scripts live in ``leanrec/service/migrations/versions``; a new
schema change is a new revision there (``alembic revision`` with ``script_location`` pointing
at that folder), never an edit of an old one.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

SCRIPTS = Path(__file__).with_name("migrations")


def _config(connection=None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPTS))
    cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    return ScriptDirectory.from_config(_config()).get_current_head()


def current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Apply every pending migration in one transaction; returns the revision reached."""
    with engine.begin() as conn:
        command.upgrade(_config(conn), revision)
    return current(engine)
