"""``POST /events``: one event, a list, or ``{"events": [...]}``, stored all or nothing."""

import time

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from ..errors import InputError
from ..inputs import check_timestamp, event_time
from .bodies import ANY_EVENTS, EVENTS, documents
from .deps import Http, json_response, read_body, unprocessable, validate


def add_routes(routes: APIRouter, http: Http) -> None:
    Svc, write, config = http.Svc, http.write, http.config

    @routes.post("/events", dependencies=[write], tags=["events"], openapi_extra=documents(ANY_EVENTS),
            summary="Append one event, a list of events, or {\"events\": [...]} (all or nothing)")
    async def post_events(request: Request, svc: Svc):
        data = await read_body(request)
        if isinstance(data, dict) and "events" not in data:
            data, single = {"events": [data]}, True
        else:
            data, single = ({"events": data} if isinstance(data, list) else data), False
        batch = validate(EVENTS, data, ["body"])
        http.check_batch(len(batch.events), "events")
        now, rows, errors = time.time(), [], []
        for k, e in enumerate(batch.events):
            ts = event_time(e.timestamp, now)
            loc = ["body"] + ([] if single else ["events", k]) + ["timestamp"]
            try:
                check_timestamp(ts, config, loc)
            except InputError as exc:
                errors += exc.errors
            rows.append({"user_id": e.user_id, "item_id": e.item_id, "ts": ts, "kind": e.kind, "value": e.value,
                         "event_id": e.event_id})
        if errors:
            raise unprocessable(errors)
        try:
            return json_response(await run_in_threadpool(svc.add_events, rows))
        except InputError as exc:
            if single:
                for err in exc.errors:
                    err["loc"] = ["body"] + err["loc"][3:]
            raise unprocessable(exc.errors) from None

