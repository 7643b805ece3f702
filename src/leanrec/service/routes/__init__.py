"""The HTTP routes, one router per resource, built per app over its :class:`~.deps.Http`
(the service, its config, the key-scope and readiness dependencies).

:func:`routers` lists them in the order the app includes them, which is the order of the
paths in ``/openapi.json``.
"""

from fastapi import APIRouter

from . import admin, events, experiments, health, items, users
from .deps import Http

__all__ = ["Http", "routers"]


def routers(http: Http) -> list[APIRouter]:
    return [module.router(http) for module in (items, events, users, experiments, admin, health)]
