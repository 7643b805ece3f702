"""``/healthz`` (the process answers), ``/readyz`` (the catalogue is loaded and the database
answers) and ``/metrics`` (Prometheus); no key needed."""

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from .deps import Http, json_response


def add_routes(routes: APIRouter, http: Http) -> None:
    service, metrics = http.service, http.metrics

    @routes.get("/healthz", tags=["operations"])
    async def healthz():
        return json_response({"status": "ok"})

    @routes.get("/readyz", tags=["operations"])
    async def readyz():
        if not service.ready:
            return json_response({"status": "error" if service.error else "starting", "error": service.error}, 503)
        error = await run_in_threadpool(service.store.connection_error)
        if error is not None:
            return json_response({"status": "database unreachable", "error": error}, 503)
        return json_response({"status": "ready", **service.stats(), "model": service.scoring.name})

    @routes.get("/metrics", tags=["operations"])
    async def prometheus():
        stats = service.stats() if service.ready else {}
        return Response(metrics.render(stats), media_type="text/plain; version=0.0.4")

