"""Alembic environment: runs on the connection the store hands over (``config.attributes``),
so migrations use the service's own engine, URL and SQLite pragmas."""

from alembic import context

from leanrec.service.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - run through leanrec.service.migrate only
    raise RuntimeError("run leanrec's migrations through leanrec.service.migrate.upgrade(engine)")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
