"""``/items``: create, replace, read and delete items; ``/items/{id}/similar``."""

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from ..inputs import parse_filters
from .bodies import ANY_ITEMS, ITEM, ITEMS, Filters, PathId, documents
from .deps import Http, call, json_response, read_body, validate


def add_routes(routes: APIRouter, http: Http) -> None:
    Svc, read, write = http.Svc, http.read, http.write

    @routes.put("/items/{item_id}", dependencies=[write], tags=["items"], openapi_extra=documents(ITEM),
                responses={201: {"description": "Created: a new item (200: an existing one replaced)"}},
           summary="Create or replace an item; it is encoded and recommendable when this returns")
    async def put_item(item_id: PathId, request: Request, svc: Svc):
        body = validate(ITEM, await read_body(request), ["body"])
        res = await call(svc.upsert_items, [{"item_id": item_id, "text": body.text, "fields": body.fields}],
                         thread=True)
        return json_response({"item_id": item_id, "created": res[0]["created"], "seq": res[0]["seq"]},
                             201 if res[0]["created"] else 200)

    @routes.post("/items", dependencies=[write], tags=["items"], openapi_extra=documents(ANY_ITEMS),
            summary="Create or replace a batch of items (all or nothing)")
    async def post_items(request: Request, svc: Svc):
        data = await read_body(request)
        if isinstance(data, list):
            data = {"items": data}
        batch = validate(ITEMS, data, ["body"])
        http.check_batch(len(batch.items), "items")
        res = await call(svc.upsert_items, [{"item_id": it.item_id, "text": it.text, "fields": it.fields}
                                            for it in batch.items], thread=True)
        return json_response({"stored": len(res), "created": sum(r["created"] for r in res)})

    @routes.get("/items/{item_id}", dependencies=[read], tags=["items"])
    async def get_item(item_id: PathId, svc: Svc):
        return json_response(await call(svc.get_item, item_id, thread=True))

    @routes.delete("/items/{item_id}", dependencies=[write], tags=["items"], status_code=204,
              summary="Delete an item; it never appears in a list again")
    async def delete_item(item_id: PathId, svc: Svc):
        await call(svc.delete_item, item_id, thread=True)
        return Response(status_code=204)

    @routes.get("/items/{item_id}/similar", dependencies=[read], tags=["recommendations"])
    async def similar(item_id: PathId, svc: Svc, k: Annotated[int, Query(ge=1, le=http.config.max_k)] = 10,
                      filter: Filters = None):
        return json_response(await call(svc.similar, item_id, k, parse_filters(filter)))

