"""The real-time service: FastAPI over a SQL store, an in-process vector index and live profiles.

``create_app(config)`` builds the ASGI app; ``RecService`` is the same service without HTTP.
"""

from .config import ServiceConfig, load_config

__all__ = ["RecService", "ServiceConfig", "create_app", "load_config"]


def __getattr__(name):
    if name == "create_app":
        from .api import create_app

        return create_app
    if name == "RecService":
        from .core import RecService

        return RecService
    raise AttributeError(name)
