"""Online experiments and their exposures (the lists served under them, one row each).
The rules — arms, assignment, interleaving, attribution, statistics — are
:mod:`leanrec.service.experiments`'; this module only keeps their rows."""

from __future__ import annotations

import json
from contextlib import contextmanager

from sqlalchemy import case, delete, func, select, update

from ..schema import attributions, experiments, exposures
from .base import Database


class ExperimentRows(Database):
    def add_experiment(self, exp: dict) -> bool:
        """Store a new experiment (``Experiment.to_dict()``); False if the id is taken."""
        with self.engine.begin() as conn:
            if conn.execute(select(experiments.c.id).where(experiments.c.id == exp["id"])).first() is not None:
                return False
            conn.execute(experiments.insert().values(
                id=exp["id"], mode=exp["mode"], status=exp["status"], arms=json.dumps(exp["arms"]),
                attribution_window_s=exp["attribution_window_s"], click_kinds=json.dumps(exp["click_kinds"]),
                created_at=exp["created_at"], stopped_at=exp["stopped_at"]))
        return True

    def experiments(self) -> list[dict]:
        """Every experiment, oldest first, as ``Experiment.from_dict`` reads them."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(experiments).order_by(experiments.c.created_at, experiments.c.id)).mappings()
            return [{**r, "arms": json.loads(r["arms"]), "click_kinds": json.loads(r["click_kinds"])} for r in rows]

    def stop_experiment(self, experiment_id: str, ts: float) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(experiments).where(experiments.c.id == experiment_id, experiments.c.status == "running")
                         .values(status="stopped", stopped_at=ts))

    @contextmanager
    def new_exposure(self, experiment_id: str, user_id: str, arm: str | None, ts: float):
        """Log one served list: yields ``{"id": exposure id}`` before the list exists (an
        interleaved list's coins are seeded by that id, so the stored row replays it); the
        caller sets ``items`` (and ``teams``) and the row is completed on exit. Two short
        transactions — the id is taken, then the list written — so no write lock is held
        while the caller ranks (on SQLite that lock would stall every other writer); an
        exception inside deletes the row again."""
        with self.engine.begin() as conn:
            xid = int(conn.execute(exposures.insert().returning(exposures.c.id).values(
                experiment_id=experiment_id, user_id=user_id, arm=arm, items="[]", teams=None, ts=ts)).scalar_one())
        row: dict = {"id": xid, "items": [], "teams": None}
        try:
            yield row
        except BaseException:
            with self.engine.begin() as conn:
                conn.execute(delete(exposures).where(exposures.c.id == xid))
            raise
        with self.engine.begin() as conn:
            conn.execute(update(exposures).where(exposures.c.id == xid).values(
                items=json.dumps(row["items"]), teams=None if row["teams"] is None else json.dumps(row["teams"])))

    def _clicks_per_exposure(self, experiment_id: str):
        """Subquery: (exposure id, team or arm, attributed clicks) of one experiment."""
        return (select(attributions.c.exposure_id.label("xid"), attributions.c.arm.label("team"),
                       func.count().label("n"))
                .where(attributions.c.experiment_id == experiment_id)
                .group_by(attributions.c.exposure_id, attributions.c.arm).subquery())

    def ab_user_outcomes(self, experiment_id: str) -> list[tuple]:
        """One row per (arm, user), aggregated in SQL: (arm, user id, exposures, clicked
        exposures, clicks) — the A/B report's input, without reading every exposure."""
        c = self._clicks_per_exposure(experiment_id)
        per_x = (select(exposures.c.arm, exposures.c.user_id, func.coalesce(func.sum(c.c.n), 0).label("clicks"))
                 .select_from(exposures.outerjoin(c, c.c.xid == exposures.c.id))
                 .where(exposures.c.experiment_id == experiment_id)
                 .group_by(exposures.c.id, exposures.c.arm, exposures.c.user_id).subquery())
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(
                select(per_x.c.arm, per_x.c.user_id, func.count(),
                       func.sum(case((per_x.c.clicks > 0, 1), else_=0)), func.sum(per_x.c.clicks))
                .group_by(per_x.c.arm, per_x.c.user_id))]

    def interleave_counts(self, experiment_id: str, team_a: str, team_b: str) -> dict:
        """The interleaving report's counts, aggregated in SQL: users, exposures, wins of each
        team (more clicks in the exposure), ties (equal, > 0) and each team's clicks."""
        c = self._clicks_per_exposure(experiment_id)
        a = func.coalesce(func.sum(case((c.c.team == team_a, c.c.n), else_=0)), 0)
        b = func.coalesce(func.sum(case((c.c.team == team_b, c.c.n), else_=0)), 0)
        per_x = (select(exposures.c.user_id, a.label("a"), b.label("b"))
                 .select_from(exposures.outerjoin(c, c.c.xid == exposures.c.id))
                 .where(exposures.c.experiment_id == experiment_id)
                 .group_by(exposures.c.id, exposures.c.user_id).subquery())
        with self.engine.connect() as conn:
            row = conn.execute(select(
                func.count(func.distinct(per_x.c.user_id)), func.count(),
                func.coalesce(func.sum(case((per_x.c.a > per_x.c.b, 1), else_=0)), 0),
                func.coalesce(func.sum(case((per_x.c.b > per_x.c.a, 1), else_=0)), 0),
                func.coalesce(func.sum(case(((per_x.c.a == per_x.c.b) & (per_x.c.a > 0), 1), else_=0)), 0),
                func.coalesce(func.sum(per_x.c.a), 0), func.coalesce(func.sum(per_x.c.b), 0))).one()
        return dict(zip(("users", "exposures", "wins_a", "wins_b", "ties", "clicks_a", "clicks_b"),
                        (int(v) for v in row)))

    def exposure_outcomes(self, experiment_id: str) -> list[tuple]:
        """One row per exposure: (exposure id, user id, arm, {team or arm: attributed clicks})."""
        with self.engine.connect() as conn:
            clicks: dict[int, dict[str, int]] = {}
            for x, arm, n in conn.execute(
                    select(attributions.c.exposure_id, attributions.c.arm, func.count())
                    .where(attributions.c.experiment_id == experiment_id)
                    .group_by(attributions.c.exposure_id, attributions.c.arm)):
                clicks.setdefault(int(x), {})[arm] = int(n)
            return [(int(x), u, a, clicks.get(int(x), {})) for x, u, a in conn.execute(
                select(exposures.c.id, exposures.c.user_id, exposures.c.arm)
                .where(exposures.c.experiment_id == experiment_id).order_by(exposures.c.id))]
