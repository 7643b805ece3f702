"""ASGI middleware of the HTTP service: the request body limit (413) and per-route timing."""

from __future__ import annotations

import time

from fastapi.responses import JSONResponse

from .metrics import Metrics


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
