"""What every router shares: readiness, API-key scopes, batch limits, the error handlers and
the helpers that parse bodies and write responses.

No ``from __future__ import annotations`` in the route modules: FastAPI reads the routes'
and dependencies' annotations as objects (``Annotated[..., Depends(...)]``), and the
routers are built per app, so their annotations name locals a string could not resolve.
"""

import gc
import logging
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import exc as sa_exc

from ..config import ServiceConfig
from ..core import RecService
from ..errors import Conflict, InputError, NotFound
from ..keys import allows, hash_key
from ..metrics import Metrics
from ..store import StoreError, unavailable_reason


class Http:
    """The dependencies of one app's routes, over its service and config.

    ``read`` / ``write``: route dependencies that check the caller's key scope; ``Svc``: the
    annotation of a route's service parameter, a 503 until the service has started.
    Dependencies are ``async`` on purpose: a sync one costs a thread-pool hop per request.
    """

    def __init__(self, service: RecService, config: ServiceConfig, metrics: Metrics):
        self.service, self.config, self.metrics = service, config, metrics
        self.read, self.write = self.need("read"), self.need("write")
        self.Svc = Annotated[RecService, Depends(self.ready)]

    async def ready(self) -> RecService:
        service = self.service
        if not service.ready:
            raise HTTPException(503, detail=service.error or "starting: the catalogue is being loaded")
        return service

    async def key_scope(self, request: Request) -> str | None:
        if self.service.key_file_changed():  # a key added or revoked in the file counts at once
            await run_in_threadpool(self.service.reload_api_keys)
        header = request.headers.get("authorization")
        if header is None:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HTTPException(401, detail="malformed Authorization header: send 'Authorization: Bearer KEY'",
                                headers={"WWW-Authenticate": "Bearer"})
        scope = self.service.api_keys.get(hash_key(token.strip()))
        if scope is None:
            raise HTTPException(401, detail="invalid API key", headers={"WWW-Authenticate": "Bearer"})
        return scope

    def need(self, what: str):
        config, service = self.config, self.service

        async def check(request: Request) -> None:
            if what == "read" and not config.read_requires_key:
                return
            scope = await self.key_scope(request)
            if scope is None:
                why = ("no API keys are configured: start the service with --api-key-file"
                       if not service.api_keys else f"missing API key: this needs a {what!r} key "
                       "sent as 'Authorization: Bearer KEY'")
                raise HTTPException(401, detail=why, headers={"WWW-Authenticate": "Bearer"})
            if not allows(scope, what):
                raise HTTPException(403, detail=f"this key has scope {scope!r}; this request needs {what!r}")
        check.leanrec_scope = what  # read by the OpenAPI pass (openapi_errors.scope_of)
        return Depends(check)

    def check_batch(self, n: int, what: str) -> None:
        if n > self.config.max_batch:
            raise unprocessable([{"loc": ["body", what], "type": "too_long",
                                  "msg": f"at most {self.config.max_batch} {what} per request, got {n}"}])


def unavailable(reason: str, retry_after_s: int) -> JSONResponse:
    """503 with ``Retry-After``: the database cannot take the request now (a fixed sentence:
    no SQL, no parameters, no ids)."""
    return JSONResponse({"detail": f"{reason}; nothing was stored, retry in {retry_after_s} s"},
                        status_code=503, headers={"Retry-After": str(retry_after_s)})


def add_error_handlers(app: FastAPI, config: ServiceConfig) -> None:
    """The service's errors as HTTP answers: InputError 422, NotFound 404, Conflict 409, a
    database locked, full, failing or unreachable 503 with ``Retry-After`` (every write is one
    transaction, so such a request stored nothing). Any other database error stays a 500."""

    @app.exception_handler(InputError)
    async def _input_error(request: Request, exc: InputError):
        return JSONResponse({"detail": exc.errors}, status_code=422)

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound):
        # the message itself: str() of a KeyError would quote it, and stripping quotes mangles it
        detail = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
        return JSONResponse({"detail": detail}, status_code=404)

    @app.exception_handler(Conflict)
    async def _conflict(request: Request, exc: Conflict):
        return JSONResponse({"detail": str(exc)}, status_code=409)

    async def _database(request: Request, exc: Exception):
        reason = unavailable_reason(exc)
        if reason is None:
            raise exc  # a bug, not a fault: the 500 handler logs it
        logging.getLogger("leanrec.service").warning("%s %s: 503, %s", request.method, request.url.path, reason)
        return unavailable(reason, int(config.db_retry_after_s))

    for cls in (sa_exc.DBAPIError, sa_exc.TimeoutError, StoreError):
        app.add_exception_handler(cls, _database)


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def unprocessable(errors: list[dict]) -> HTTPException:
    return HTTPException(422, detail=errors)


def validate(adapter: TypeAdapter, data: Any, prefix: list) -> Any:
    """``data`` parsed by ``adapter``, or a 422 listing every error with ``loc`` under ``prefix``."""
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        raise unprocessable([{"loc": prefix + list(e["loc"]), "msg": e["msg"], "type": e["type"]}
                             for e in exc.errors(include_url=False, include_input=False)]) from None


async def read_body(request: Request) -> Any:
    """The request's JSON body; malformed JSON is a 422 at ``["body"]``."""
    raw = await request.body()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise unprocessable([{"loc": ["body"], "msg": f"malformed JSON: {exc}", "type": "json_invalid"}]) from None


async def call(fn, *args, thread: bool = False):
    """Run a service call in the thread pool when it may block (encoding, commits). Reads
    run inline: they are sub-millisecond in-memory work, and skipping the thread hop is
    what keeps p99 low under load. ``InputError``/``NotFound`` become 422/404 (handlers)."""
    return await run_in_threadpool(fn, *args) if thread else fn(*args)


def settle_garbage_collector() -> None:
    """Move everything alive after start-up (modules, the catalogue) out of the collector's
    reach. Without it each full collection walks every long-lived object, a stall of the
    event loop that was the whole p99 tail in benchmarks/results/service_load.md."""
    gc.collect()
    gc.freeze()
