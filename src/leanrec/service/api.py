"""The HTTP app over :class:`~leanrec.service.core.RecService`: :func:`create_app` wires the
routes of :mod:`.routes` (one module per resource), the middleware and the start-up.

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

import logging
import threading
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from .config import ServiceConfig
from .core import RecService
from .metrics import Metrics
from .middleware import BodyLimit, Timing
from .routes import Http, add_routes
from .routes.deps import add_error_handlers, settle_garbage_collector
from .routes.openapi_errors import document_errors

__all__ = ["create_app", "settle_garbage_collector"]


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

    # the description is this module's docstring after its first paragraph: the conventions
    app = FastAPI(title="leanrec", version="0.1.0", lifespan=lifespan,
                  description="Recommendations from a language model's view of the catalogue, "
                              "collaborative signals and live events. " + (__doc__ or "").split("\n\n", 1)[1])
    app.state.service = service
    app.state.metrics = metrics
    add_error_handlers(app, config)
    add_routes(app.router, Http(service, config, metrics))
    document_errors(app, config)
    app.add_middleware(BodyLimit, limit=config.max_body_bytes)
    app.add_middleware(Timing, metrics=metrics)
    return app


def _start_quietly(service: RecService) -> None:
    try:
        service.start()
        settle_garbage_collector()
    except Exception:  # recorded in service.error; /readyz reports it
        logging.getLogger("leanrec.service").exception("the service failed to start")
