"""The HTTP routes, one module per resource, each adding its routes to the app's router
over an :class:`~.deps.Http` (the service, its config, the key-scope and readiness
dependencies).

:func:`add_routes` adds them in the order of the paths in ``/openapi.json``. They go on the
app's own router, not through ``include_router``: FastAPI (0.165) matches an included
router's routes through a lazily built wrapper per request, which cost ~20 µs of a ~500 µs
request (15 extra route checks) in the in-process ASGI benchmark.
"""

from fastapi import APIRouter

from . import admin, events, experiments, health, items, users
from .deps import Http

__all__ = ["Http", "add_routes"]


def add_routes(router: APIRouter, http: Http) -> None:
    for module in (items, events, users, experiments, admin, health):
        module.add_routes(router, http)
