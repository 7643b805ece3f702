"""``/users/{id}/recommendations``: a user's top-k list (served under an experiment, explained)."""

from typing import Annotated

from fastapi import APIRouter, Query, Request

from ..inputs import parse_filters
from .bodies import Filters, PathId
from .deps import Http, call, json_response


def add_routes(routes: APIRouter, http: Http) -> None:
    Svc, read, write = http.Svc, http.read, http.write

    @routes.get("/users/{user_id}/recommendations", dependencies=[read], tags=["recommendations"],
           summary="Top-k items for a user (a cold-start list for unknown users)")
    async def recommendations(
            user_id: PathId, svc: Svc, request: Request, k: Annotated[int, Query(ge=1, le=http.config.max_k)] = 10,
            exclude_seen: bool = True,
            filter: Filters = None,
            experiment: Annotated[str | None, Query(max_length=64, description="Serve (and log) the list of this "
                                                    "running experiment; logging needs a write key")] = None,
            explain: Annotated[bool, Query(description="Add each item's exact score split into the user's history "
                                                       "items and one sentence (reads the store: slower)")] = False):
        filters = parse_filters(filter)
        if experiment is not None:  # the list is logged as an exposure: a write, so a write key
            await write.dependency(request)
        if experiment is not None or explain:  # an exposure write or history reads: off the event loop
            return json_response(await call(svc.recommend, user_id, k, exclude_seen, filters, experiment, explain,
                                            thread=True))
        # a user not in memory costs database queries: do those off the event loop
        return json_response(await call(svc.recommend, user_id, k, exclude_seen, filters,
                                        thread=not svc.is_cached(user_id)))

