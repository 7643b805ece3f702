"""``/healthz`` (the process answers), ``/readyz`` (the catalogue is loaded and the database
takes writes) and ``/metrics`` (Prometheus); no key needed."""

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
        # unusable: a write failed for a database fault (locked, full, I/O, unreachable) less than
        # db_retry_after_s ago and none succeeded since, or a write could not start now
        retry = int(http.config.db_retry_after_s)
        error = service.store.recent_fault(retry) or await run_in_threadpool(service.store.write_error)
        if error is not None:
            answer = json_response({"status": "database unavailable", "error": error}, 503)
            answer.headers["Retry-After"] = str(retry)
            return answer
        return json_response({"status": "ready", **service.stats(), "model": service.scoring.name})

    @routes.get("/metrics", tags=["operations"])
    async def prometheus():
        stats = service.stats() if service.ready else {}
        return Response(metrics.render(stats), media_type="text/plain; version=0.0.4")

