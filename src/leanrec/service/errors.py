"""What the service refuses, as exceptions the HTTP layer maps to status codes (422, 404, 409)."""

from __future__ import annotations


class InputError(ValueError):
    """Request content the service refuses; ``errors`` follow FastAPI's 422 shape."""

    def __init__(self, errors: list[dict]):
        self.errors = errors
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors))


class NotFound(LookupError):
    pass


class Conflict(RuntimeError):
    """The request is valid but the resource's state refuses it (HTTP 409): an experiment
    id already taken, a stopped experiment asked for a list."""
