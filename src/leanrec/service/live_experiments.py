"""Online experiments as the service runs them: creation, arms' scorings, A/B and interleaved lists, reports.

Part of :class:`~leanrec.service.core.RecService` (see its docstring for the locks).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from ..models.live import encoder_key
from ..models.registry import load_scorer
from .errors import Conflict, InputError, NotFound
from .experiments import (
    DEFAULT_CLICK_KINDS,
    DEFAULT_WINDOW_S,
    Arm,
    Experiment,
    ab_report_from_users,
    check_arms,
    equal_shares,
    interleave_report_from_counts,
    team_draft,
)
from .scoring import (
    Ranked,
    Scoring,
    UserState,
)

log = logging.getLogger("leanrec.service")


class LiveExperiments:
    def create_experiment(self, spec: dict) -> dict:
        """Start an experiment. ``spec``: id, mode, arms [{name, share, model}], and optionally
        attribution_window_s and click_kinds (types already checked by the caller). Every
        arm's model is loaded now, so a bad folder is a 422 naming the arm instead of a
        failing list later; an id already used (running or stopped) is a 409."""
        arms = [dict(a) for a in spec["arms"]]
        errors = check_arms(spec["mode"], arms)
        if errors:
            raise InputError(errors)
        arms = equal_shares(arms)
        for k, a in enumerate(arms):
            if a.get("model"):
                a["model"] = str(Path(a["model"]).expanduser().resolve())
            try:
                self._arm_scoring(Arm(a["name"], float(a["share"]), a.get("model")))
            except (FileNotFoundError, ValueError) as exc:
                errors.append({"loc": ["body", "arms", k, "model"], "type": "value_error",
                               "msg": f"arm {a['name']!r}: {exc}"})
        if errors:
            raise InputError(errors)
        exp = Experiment(spec["id"], spec["mode"], [Arm(a["name"], float(a["share"]), a.get("model")) for a in arms],
                         attribution_window_s=float(spec.get("attribution_window_s") or DEFAULT_WINDOW_S),
                         click_kinds=tuple(spec.get("click_kinds") or DEFAULT_CLICK_KINDS), created_at=time.time())
        with self._write:  # add_events reads the running experiments under this lock
            if not self.store.add_experiment(exp.to_dict()):
                raise Conflict(f"an experiment {exp.id!r} already exists; experiment ids are never reused")
            self._experiments = {**self._experiments, exp.id: exp}
        return exp.to_dict()

    def experiments(self) -> list[dict]:
        return [e.to_dict() for e in self._experiments.values()]

    def experiment(self, experiment_id: str) -> dict:
        return self._get_experiment(experiment_id).to_dict()

    def _get_experiment(self, experiment_id: str) -> Experiment:
        exp = self._experiments.get(experiment_id)
        if exp is None:
            raise NotFound(f"no experiment {experiment_id!r}")
        return exp

    def stop_experiment(self, experiment_id: str) -> dict:
        """Stop serving and attributing: later lists and clicks are not part of the experiment
        (its report stays readable). Stopping a stopped experiment changes nothing."""
        with self._write:
            exp = self._get_experiment(experiment_id)
            if exp.running:
                now = time.time()
                self.store.stop_experiment(exp.id, now)
                stopped = Experiment.from_dict({**exp.to_dict(), "status": "stopped", "stopped_at": now})
                self._experiments = {**self._experiments, exp.id: stopped}
                exp = stopped
        return exp.to_dict()

    def experiment_report(self, experiment_id: str) -> dict:
        """The experiment's statistics (``experiments.ab_report`` / ``interleave_report``)."""
        exp = self._get_experiment(experiment_id)
        if exp.mode == "ab":  # aggregated in SQL: per (arm, user), or to the counts the test needs
            report = ab_report_from_users(exp.arms, self.store.ab_user_outcomes(exp.id))
        else:
            report = interleave_report_from_counts(
                exp.arms, self.store.interleave_counts(exp.id, exp.arms[0].name, exp.arms[1].name))
        return {"experiment": exp.to_dict(), **report}

    def _arm_scoring(self, arm: Arm) -> Scoring:
        """An arm's Scoring, loaded once per (folder, encoder) and cached. The service holds
        one encoder and one catalogue, so a folder that needs another encoder is refused."""
        encoder = self.encoder
        key = (arm.model, encoder.model_id)
        scoring = self._arm_scorings.get(key)
        if scoring is None:
            folder = load_scorer(arm.model) if arm.model else None
            if (folder is not None and folder.encoder and self.encoder_spec is not None
                    and encoder_key(folder.encoder) != encoder_key(self.encoder_spec)):
                raise ValueError(f"the model needs the encoder {folder.encoder.get('name')!r}, but the service's "
                                 f"catalogue is encoded with {self.encoder_spec.get('name')!r}; every arm must use "
                                 "the served encoder")
            scoring = self._make_scoring(folder, encoder)
            self._arm_scorings[key] = scoring
        return scoring

    def _arm_state(self, user_id: str, st: UserState, scoring: Scoring) -> UserState:
        """The user state an arm's scoring needs. The cached state carries the served model's
        profile (its half-life) and sequence window; an arm with another half-life or a longer
        window gets its own, computed exactly from the stored history."""
        main = self.scoring
        if scoring.half_life == main.half_life and scoring.seq_keep <= main.seq_keep:
            return st
        history = self.store.history(user_id)
        keep = scoring.seq_keep
        return UserState(self._profile_from(history, scoring.half_life), st.seen,
                         tuple(i for i, _ in history[-keep:]) if keep else ())

    def _recommend_in_experiment(self, experiment_id: str, user_id: str, k: int, exclude_seen: bool,
                                 filters: list[tuple[str, str]] | None, explain: bool = False) -> dict:
        """A/B: the user's arm ranks. Interleaving: both arms rank k items and a team draft
        mixes them, its coins seeded by (experiment id, exposure id), so the exposure row
        replays the list. The list and its exposure row commit together."""
        exp = self._get_experiment(experiment_id)
        if not exp.running:
            raise Conflict(f"experiment {exp.id!r} is stopped; request recommendations without it")
        arms = [exp.assign(user_id)] if exp.mode == "ab" else list(exp.arms)
        try:
            scorings = [self._arm_scoring(a) for a in arms]
        except (FileNotFoundError, ValueError) as exc:
            raise Conflict(f"experiment {exp.id!r} cannot serve: {exc}") from None
        st = self._fresh_state(user_id)
        states = [self._arm_state(user_id, st, sc) for sc in scorings]
        tag = {"id": exp.id, "mode": exp.mode}
        with self.store.new_exposure(exp.id, user_id, arms[0].name if exp.mode == "ab" else None,
                                     time.time()) as exposure:
            tag["exposure_id"] = exposure["id"]
            with self._state:
                ranked = [self._rank(s, k, exclude_seen, filters, sc) for s, sc in zip(states, scorings)]
                cat = self.cat
                if exp.mode == "ab":
                    final, teams = ranked[0], None
                    tag["arm"] = arms[0].name
                else:
                    lists = [[cat.ids[p] for p in r.pos] for r in ranked]
                    score = [dict(zip(ids, r.scores)) for ids, r in zip(lists, ranked)]
                    mixed = team_draft(lists[0], lists[1], k, f"{exp.id}:{exposure['id']}",
                                       (arms[0].name, arms[1].name))
                    teams = [t for _, t in mixed]
                    pos = np.array([cat.pos[i] for i, _ in mixed], np.int64)
                    scores = np.array([score[0 if t == arms[0].name else 1][i] for i, t in mixed], np.float64)
                    final = Ranked(cat, pos, scores, f"interleave({ranked[0].model},{ranked[1].model})", 1.0,
                                   ranked[0].cold and ranked[1].cold, None)
                out = self._finish(user_id, final, tag, teams)
            exposure["items"], exposure["teams"] = [i["item_id"] for i in out["items"]], teams
        if explain:  # after the exposure commits: explaining is not part of what was shown
            self._explain(user_id, out, {None: (states[0], scorings[0])} if exp.mode == "ab" else
                          {a.name: (s, sc) for a, s, sc in zip(arms, states, scorings)})
        return out
