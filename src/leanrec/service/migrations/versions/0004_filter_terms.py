"""Filter terms for pgvector search: ``leanrec_filter_terms(fields)`` (PostgreSQL only).

Why: the service's field filters (``field:value``, case-insensitive, a list field matching
any element) used to be evaluated by parsing each candidate's ``fields`` JSON during the
HNSW walk — a JSON parse per visited row, and nothing an index could serve, so a selective
filter ended in a full-table scan (seconds at a million items). Each encoder's ``vector(d)``
table now carries ``filter_terms text[]`` (``"field:lower(value)"``, one per value) with a
GIN index, next to the embedding: a filter is ``filter_terms @> ARRAY[...]`` on the same
table the HNSW index serves, so the planner can weigh the graph walk against the GIN index
with statistics of one table. This function is the one definition of a term, used by the
store's writes, the bulk loader and the backfill of tables created before this revision
(``Store.vector_table`` adds the column and index to them). On SQLite this revision changes
nothing.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

FUNCTION = """
CREATE OR REPLACE FUNCTION leanrec_filter_terms(fields text) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT coalesce(array_agg(DISTINCT e.key || ':' || lower(x.v)), '{}'::text[])
  FROM jsonb_each(CASE WHEN jsonb_typeof(fields::jsonb) = 'object' THEN fields::jsonb ELSE '{}'::jsonb END)
       AS e(key, value)
  CROSS JOIN LATERAL jsonb_array_elements_text(
       CASE jsonb_typeof(e.value) WHEN 'array' THEN e.value ELSE jsonb_build_array(e.value) END) AS x(v)
  WHERE x.v IS NOT NULL
$$
"""


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    bind.execute(sa.text(FUNCTION))


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    bind.execute(sa.text("DROP FUNCTION IF EXISTS leanrec_filter_terms(text)"))
