"""The error answers each operation can give, written into ``/openapi.json``.

Why a pass over the finished document instead of ``responses=`` on every route: the rules are
properties of the app, not of one route — an operation behind a key can answer 401 (and 403
when its scope is above ``read``), one with a path id 404, one that takes a body 413 and 422,
every one that needs the service 503 (starting, or the database failing) — so they live in one
place and a new route is documented by the same rules. Error bodies are ``{"detail": ...}``:
a message, or for 422 the list of ``{"loc", "msg", "type"}`` naming each bad field.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.routing import APIRoute

from ..config import ServiceConfig

ERROR = {"type": "object", "required": ["detail"],
         "properties": {"detail": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}},
                                             {"type": "null"}]}}}
WHY = {401: "No key, a malformed or an unknown key", 403: "The key's scope does not allow this",
       404: "No such item, user list or experiment", 409: "The experiment conflicts (id in use, or stopped)",
       413: "The body is over max_body_bytes", 422: "A bad field: each error names it in loc",
       503: "Starting, or the database cannot be used now: retry after Retry-After seconds"}
NO_SERVICE = {"/healthz", "/metrics"}          # answer without the service being ready
PLAIN = {"/healthz", "/readyz", "/metrics"}    # take no input at all


def scope_of(route: APIRoute) -> str | None:
    """The key scope a route's dependencies ask for (``Http.need`` tags its check)."""
    scopes = [getattr(d.dependency, "leanrec_scope", None) for d in route.dependencies]
    return next((s for s in scopes if s is not None), None)


def error_codes(route: APIRoute, method: str, config: ServiceConfig) -> list[int]:
    path, codes = route.path_format, []
    scope = scope_of(route)
    if scope is not None and (scope != "read" or config.read_requires_key):
        codes.append(401)
        if scope != "read":
            codes.append(403)
    if "{" in path:
        codes.append(404)
    if path.startswith("/experiments") or path == "/users/{user_id}/recommendations":
        codes.append(409)
    if method in ("POST", "PUT", "PATCH"):
        codes.append(413)
    if path not in PLAIN:
        codes.append(422)
    if path not in NO_SERVICE:
        codes.append(503)
    return codes


def document_errors(app: FastAPI, config: ServiceConfig) -> None:
    """Make ``app.openapi()`` list every operation's error answers (and ``/metrics``'s
    Prometheus text content type)."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()
        schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR
        ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        for route in app.routes:
            if not isinstance(route, APIRoute) or route.path_format not in schema["paths"]:
                continue
            for method in route.methods:
                op = schema["paths"][route.path_format].get(method.lower())
                if op is None:
                    continue
                responses = op.setdefault("responses", {})
                for code in error_codes(route, method, config):
                    entry = responses.setdefault(str(code), {"description": WHY[code], "content": ref})
                    if code == 503:
                        entry.setdefault("headers", {"Retry-After": {"description": "seconds to wait",
                                                                     "schema": {"type": "integer"}}})
        metrics = schema["paths"].get("/metrics", {}).get("get")
        if metrics is not None:
            metrics["responses"]["200"]["content"] = {"text/plain": {"schema": {"type": "string"}}}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi
