"""HTTP layer: FastAPI routes over :class:`~leanrec.service.core.RecService`.

It parses, authorises and serialises; nothing else. Conventions a client can rely on:

* **Errors.** 422 bodies have FastAPI's shape, ``{"detail": [{"loc": [...], "msg": ...,
  "type": ...}]}``, with ``loc`` naming the offending field (``["body", "events", 3,
  "item_id"]``). Malformed JSON is a 422 at ``["body"]``; a body over ``max_body_bytes``
  is a 413; a missing or unknown key a 401, a read key on a write a 403.
* **Batches are atomic.** ``POST /items`` and ``POST /events`` store every element or none:
  one bad element rejects the whole request (422 listing every bad element) and nothing
  already stored changes.
* **Experiments.** ``POST /experiments`` starts an A/B test or an interleaving comparison;
  ``GET /users/{id}/recommendations?experiment=ID`` serves and logs its lists; clicks
  arrive through ``POST /events`` and are credited to the list that showed the item;
  ``GET /experiments/{id}/report`` has the statistics. An unknown experiment is a 404, an
  id already used or a stopped experiment a 409.
* **Probabilities.** ``probability`` in a recommendation list is the softmax of the
  returned items' scores (divided by the model's temperature): P(i | u, the list).
"""


import datetime as dt
import gc
import threading
import time
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal, Union

import orjson
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from .config import ServiceConfig
from .core import (
    Conflict,
    InputError,
    NotFound,
    RecService,
    check_timestamp,
    parse_filters,
)
from .experiments import DEFAULT_CLICK_KINDS, DEFAULT_WINDOW_S
from .keys import allows, hash_key
from .metrics import Metrics


def _id(v: Any) -> Any:
    return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


Id = Annotated[str, BeforeValidator(_id),
               StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f/]+$")]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Scalar = Union[StrictBool, StrictInt, Finite, Annotated[str, StringConstraints(max_length=10_000)]]
FieldValue = Union[Scalar, Annotated[list[Scalar], Field(max_length=1000)]]


class ItemBody(BaseModel):
    """An item: the text the encoder reads, and fields for filters and display."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(max_length=100_000, description="Text to encode (title, description, ...); not empty")
    fields: dict[Annotated[str, StringConstraints(min_length=1, max_length=64)], FieldValue] = Field(
        default_factory=dict, max_length=100, description="e.g. {\"genres\": [\"Crime\"], \"price\": 9.5}")

    @field_validator("text")
    @classmethod
    def _not_empty(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("text must not be empty")
        return v


class ItemWithId(ItemBody):
    item_id: Id


class ItemBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[ItemWithId] = Field(min_length=1)


class EventBody(BaseModel):
    """One interaction. ``timestamp``: Unix seconds or ISO 8601 (default: now)."""

    model_config = ConfigDict(extra="forbid")
    user_id: Id
    item_id: Id
    timestamp: Finite | dt.datetime | None = None
    kind: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,32}$")] = "view"
    value: Finite | None = None


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[EventBody] = Field(min_length=1)


class ModelSwap(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str | None = Field(description="A model folder written by `leanrec train`; null = content model")


Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
Kind = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,32}$")]


class ArmBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    share: Finite | None = Field(None, description="Traffic share (A/B), > 0; all arms' shares sum to 1. "
                                                   "Omit on every arm for equal shares")
    model: str | None = Field(None, max_length=4096,
                              description="A model folder written by `leanrec train`; null = the content model")


class ExperimentBody(BaseModel):
    """An online experiment: ``ab`` assigns each user one arm; ``interleave`` mixes exactly
    two arms' rankings in every list (team draft) and credits clicks to the item's team."""

    model_config = ConfigDict(extra="forbid")
    id: Name
    mode: Literal["ab", "interleave"] = "ab"
    arms: list[ArmBody] = Field(min_length=2, max_length=20)
    attribution_window_s: Annotated[Finite, Field(gt=0, le=90 * 86_400)] = DEFAULT_WINDOW_S
    click_kinds: list[Kind] = Field(default_factory=lambda: list(DEFAULT_CLICK_KINDS), min_length=1, max_length=20)


_ID = TypeAdapter(Id)
_ITEM = TypeAdapter(ItemBody)
_ANY_EVENTS = TypeAdapter(Union[EventBody, list[EventBody], EventBatch])
_ANY_ITEMS = TypeAdapter(Union[ItemBatch, list[ItemWithId]])
_ITEMS = TypeAdapter(ItemBatch)
_EVENT = TypeAdapter(EventBody)
_EVENTS = TypeAdapter(EventBatch)
_SWAP = TypeAdapter(ModelSwap)
_EXPERIMENT = TypeAdapter(ExperimentBody)


def _inline(schema: dict) -> dict:
    """A JSON schema with its ``$defs`` inlined, to embed in the OpenAPI document."""
    defs = schema.pop("$defs", {})

    def walk(node):
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return walk(dict(defs[ref.removeprefix("#/$defs/")]))
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)


def _documents(adapter: TypeAdapter) -> dict:
    """``openapi_extra`` for a route that parses its JSON body itself (for one-or-many
    bodies and all-or-nothing batch errors): the body's schema still appears in /docs."""
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": _inline(adapter.json_schema())}}}}


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _unprocessable(errors: list[dict]) -> HTTPException:
    return HTTPException(422, detail=errors)


def _validate(adapter: TypeAdapter, data: Any, prefix: list) -> Any:
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        raise _unprocessable([{"loc": prefix + list(e["loc"]), "msg": e["msg"], "type": e["type"]}
                              for e in exc.errors(include_url=False, include_input=False)]) from None


async def _body(request: Request) -> Any:
    raw = await request.body()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _unprocessable([{"loc": ["body"], "msg": f"malformed JSON: {exc}", "type": "json_invalid"}]) from None


class BodyLimit:
    """413 for bodies over the limit: at once from Content-Length, else while streaming."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await self._too_big(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooBig()
            return message

        try:
            await self.app(scope, limited, send)
        except _TooBig:
            await self._too_big(scope, receive, send)

    async def _too_big(self, scope, receive, send):
        response = JSONResponse({"detail": f"request body over the limit of {self.limit} bytes"}, status_code=413)
        await response(scope, receive, send)


class _TooBig(Exception):
    pass


class Timing:
    """Request counts and latency per route template (not per raw path: bounded labels)."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = [500]

        async def send_wrapped(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapped)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope.get("method", "")
            self.metrics.requests.labels(method, route, str(status[0])).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - t0)


def create_app(config: ServiceConfig, *, encoder=None, start_in_background: bool = True) -> FastAPI:
    """The ASGI app. The service loads in a background thread so that ``/healthz`` answers
    at once and ``/readyz`` says 503 until the catalogue is in memory."""
    metrics = Metrics()
    service = RecService(config, encoder=encoder, metrics=metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if start_in_background:
            threading.Thread(target=_start_quietly, args=(service,), name="leanrec-start", daemon=True).start()
        else:
            await run_in_threadpool(service.start)
            settle_garbage_collector()
        yield
        if service.ready:
            await run_in_threadpool(service.stop)

    app = FastAPI(title="leanrec", version="0.1.0", lifespan=lifespan,
                  description="Recommendations from a language model's view of the catalogue, "
                              "collaborative signals and live events. " + (__doc__ or "").split("\n\n", 1)[1])
    app.state.service = service
    app.state.metrics = metrics

    @app.exception_handler(InputError)
    async def _input_error(request: Request, exc: InputError):
        return JSONResponse({"detail": exc.errors}, status_code=422)

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound):
        return JSONResponse({"detail": str(exc).strip("'\"")}, status_code=404)

    @app.exception_handler(Conflict)
    async def _conflict(request: Request, exc: Conflict):
        return JSONResponse({"detail": str(exc)}, status_code=409)

    # Dependencies are ``async`` on purpose: a sync one costs a thread-pool hop per request.
    async def ready() -> RecService:
        if not service.ready:
            raise HTTPException(503, detail=service.error or "starting: the catalogue is being loaded")
        return service

    def key_scope(request: Request) -> str | None:
        header = request.headers.get("authorization")
        if header is None:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HTTPException(401, detail="malformed Authorization header: send 'Authorization: Bearer KEY'",
                                headers={"WWW-Authenticate": "Bearer"})
        scope = service.api_keys.get(hash_key(token.strip()))
        if scope is None:
            raise HTTPException(401, detail="invalid API key", headers={"WWW-Authenticate": "Bearer"})
        return scope

    def need(what: str):
        async def check(request: Request) -> None:
            if what == "read" and not config.read_requires_key:
                return
            scope = key_scope(request)
            if scope is None:
                why = ("no API keys are configured: start the service with --api-key-file"
                       if not service.api_keys else f"missing API key: this needs a {what!r} key "
                       "sent as 'Authorization: Bearer KEY'")
                raise HTTPException(401, detail=why, headers={"WWW-Authenticate": "Bearer"})
            if not allows(scope, what):
                raise HTTPException(403, detail=f"this key has scope {scope!r}; this request needs {what!r}")
        return Depends(check)

    read, write = need("read"), need("write")

    def check_batch(n: int, what: str) -> None:
        if n > config.max_batch:
            raise _unprocessable([{"loc": ["body", what], "type": "too_long",
                                   "msg": f"at most {config.max_batch} {what} per request, got {n}"}])
    Svc = Annotated[RecService, Depends(ready)]

    # -- items --------------------------------------------------------------------------
    @app.put("/items/{item_id}", dependencies=[write], tags=["items"], openapi_extra=_documents(_ITEM),
             summary="Create or replace an item; it is encoded and recommendable when this returns")
    async def put_item(item_id: Annotated[str, Path(max_length=256)], request: Request, svc: Svc):
        _validate(_ID, item_id, ["path", "item_id"])
        body = _validate(_ITEM, await _body(request), ["body"])
        res = await _call(svc.upsert_items, [{"item_id": item_id, "text": body.text, "fields": body.fields}],
                          thread=True)
        return _json({"item_id": item_id, "created": res[0]["created"], "seq": res[0]["seq"]},
                     201 if res[0]["created"] else 200)

    @app.post("/items", dependencies=[write], tags=["items"], openapi_extra=_documents(_ANY_ITEMS),
              summary="Create or replace a batch of items (all or nothing)")
    async def post_items(request: Request, svc: Svc):
        data = await _body(request)
        if isinstance(data, list):
            data = {"items": data}
        batch = _validate(_ITEMS, data, ["body"])
        check_batch(len(batch.items), "items")
        res = await _call(svc.upsert_items, [{"item_id": it.item_id, "text": it.text, "fields": it.fields}
                                             for it in batch.items], thread=True)
        return _json({"stored": len(res), "created": sum(r["created"] for r in res)})

    @app.get("/items/{item_id}", dependencies=[read], tags=["items"])
    async def get_item(item_id: str, svc: Svc):
        return _json(await _call(svc.get_item, item_id, thread=True))

    @app.delete("/items/{item_id}", dependencies=[write], tags=["items"], status_code=204,
                summary="Delete an item; it never appears in a list again")
    async def delete_item(item_id: str, svc: Svc):
        await _call(svc.delete_item, item_id, thread=True)
        return Response(status_code=204)

    @app.get("/items/{item_id}/similar", dependencies=[read], tags=["recommendations"])
    async def similar(item_id: str, svc: Svc, k: Annotated[int, Query(ge=1, le=config.max_k)] = 10,
                      filter: Annotated[list[str] | None, Query(description="field:value, e.g. genres:Comedy")] = None):
        return _json(await _call(svc.similar, item_id, k, parse_filters(filter)))

    # -- events -------------------------------------------------------------------------
    @app.post("/events", dependencies=[write], tags=["events"], openapi_extra=_documents(_ANY_EVENTS),
              summary="Append one event, a list of events, or {\"events\": [...]} (all or nothing)")
    async def post_events(request: Request, svc: Svc):
        data = await _body(request)
        if isinstance(data, dict) and "events" not in data:
            data, single = {"events": [data]}, True
        else:
            data, single = ({"events": data} if isinstance(data, list) else data), False
        batch = _validate(_EVENTS, data, ["body"])
        check_batch(len(batch.events), "events")
        now, rows, errors = time.time(), [], []
        for k, e in enumerate(batch.events):
            ts = now if e.timestamp is None else (e.timestamp.timestamp() if isinstance(e.timestamp, dt.datetime)
                                                 else float(e.timestamp))
            loc = ["body"] + ([] if single else ["events", k]) + ["timestamp"]
            try:
                check_timestamp(ts, config, loc)
            except InputError as exc:
                errors += exc.errors
            rows.append({"user_id": e.user_id, "item_id": e.item_id, "ts": ts, "kind": e.kind, "value": e.value})
        if errors:
            raise _unprocessable(errors)
        try:
            return _json(await run_in_threadpool(svc.add_events, rows))
        except InputError as exc:
            if single:
                for err in exc.errors:
                    err["loc"] = ["body"] + err["loc"][3:]
            raise _unprocessable(exc.errors) from None

    # -- recommendations ----------------------------------------------------------------
    @app.get("/users/{user_id}/recommendations", dependencies=[read], tags=["recommendations"],
             summary="Top-k items for a user (a cold-start list for unknown users)")
    async def recommendations(
            user_id: str, svc: Svc, k: Annotated[int, Query(ge=1, le=config.max_k)] = 10,
            exclude_seen: bool = True,
            filter: Annotated[list[str] | None, Query(description="field:value, e.g. genres:Comedy")] = None,
            experiment: Annotated[str | None, Query(max_length=64, description="Serve (and log) the list of this "
                                                    "running experiment")] = None,
            explain: Annotated[bool, Query(description="Add each item's exact score split into the user's history "
                                                       "items and one sentence (reads the store: slower)")] = False):
        filters = parse_filters(filter)
        if experiment is not None or explain:  # an exposure write or history reads: off the event loop
            return _json(await _call(svc.recommend, user_id, k, exclude_seen, filters, experiment, explain,
                                     thread=True))
        # a user not in memory costs database queries: do those off the event loop
        return _json(await _call(svc.recommend, user_id, k, exclude_seen, filters, thread=not svc.is_cached(user_id)))

    # -- experiments --------------------------------------------------------------------
    @app.post("/experiments", dependencies=[write], tags=["experiments"], status_code=201,
              openapi_extra=_documents(_EXPERIMENT), summary="Start an A/B test or an interleaving comparison")
    async def post_experiment(request: Request, svc: Svc):
        body = _validate(_EXPERIMENT, await _body(request), ["body"])
        exp = await _call(svc.create_experiment, body.model_dump(), thread=True)
        return _json(exp, 201)

    @app.get("/experiments", dependencies=[read], tags=["experiments"])
    async def list_experiments(svc: Svc):
        return _json({"experiments": svc.experiments()})

    @app.get("/experiments/{experiment_id}", dependencies=[read], tags=["experiments"])
    async def get_experiment(experiment_id: str, svc: Svc):
        return _json(svc.experiment(experiment_id))

    @app.post("/experiments/{experiment_id}/stop", dependencies=[write], tags=["experiments"],
              summary="Stop serving and attributing; the report stays readable")
    async def stop_experiment(experiment_id: str, svc: Svc):
        return _json(await _call(svc.stop_experiment, experiment_id, thread=True))

    @app.get("/experiments/{experiment_id}/report", dependencies=[read], tags=["experiments"],
             summary="Per-arm CTR with 95% intervals, differences and p-values, SRM check (or interleaving wins)")
    async def experiment_report(experiment_id: str, svc: Svc):
        return _json(await _call(svc.experiment_report, experiment_id, thread=True))

    # -- model --------------------------------------------------------------------------
    @app.get("/model", dependencies=[read], tags=["model"])
    async def get_model(svc: Svc):
        return _json(svc.model_info())

    @app.put("/model", dependencies=[write], tags=["model"], openapi_extra=_documents(_SWAP),
             summary="Serve another model folder; requests keep being answered during the swap")
    async def put_model(request: Request, svc: Svc):
        body = _validate(_SWAP, await _body(request), ["body"])
        try:
            info = await run_in_threadpool(svc.load_model, body.path)
        except (FileNotFoundError, ValueError) as exc:
            raise _unprocessable([{"loc": ["body", "path"], "msg": str(exc), "type": "value_error"}]) from None
        settle_garbage_collector()
        return _json(info)

    # -- operations ---------------------------------------------------------------------
    @app.get("/healthz", tags=["operations"])
    async def healthz():
        return _json({"status": "ok"})

    @app.get("/readyz", tags=["operations"])
    async def readyz():
        if not service.ready:
            return _json({"status": "error" if service.error else "starting", "error": service.error}, 503)
        error = await run_in_threadpool(service.store.connection_error)
        if error is not None:
            return _json({"status": "database unreachable", "error": error}, 503)
        return _json({"status": "ready", **service.stats(), "model": service.scoring.name})

    @app.get("/metrics", tags=["operations"])
    async def prometheus():
        stats = service.stats() if service.ready else {}
        return Response(metrics.render(stats), media_type="text/plain; version=0.0.4")

    app.add_middleware(BodyLimit, limit=config.max_body_bytes)
    app.add_middleware(Timing, metrics=metrics)
    return app


def settle_garbage_collector() -> None:
    """Move everything alive after start-up (modules, the catalogue) out of the collector's
    reach. Without it each full collection walks ~200k long-lived objects, a 100-300 ms
    stall of the event loop that was the whole p99 tail in the load benchmark."""
    gc.collect()
    gc.freeze()


async def _call(fn, *args, thread: bool = False):
    """Run a service call in the thread pool when it may block (encoding, commits). Reads
    run inline: they are sub-millisecond in-memory work, and skipping the thread hop is
    what keeps p99 low under load. ``InputError``/``NotFound`` become 422/404 (handlers)."""
    return await run_in_threadpool(fn, *args) if thread else fn(*args)


def _start_quietly(service: RecService) -> None:
    try:
        service.start()
        settle_garbage_collector()
    except Exception:  # recorded in service.error; /readyz reports it
        import logging

        logging.getLogger("leanrec.service").exception("the service failed to start")
