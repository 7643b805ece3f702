"""``/model``: which model is served, and swapping it for another model folder."""

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from .bodies import SWAP, documents
from .deps import Http, json_response, read_body, settle_garbage_collector, unprocessable, validate


def add_routes(routes: APIRouter, http: Http) -> None:
    Svc, read, write = http.Svc, http.read, http.write

    @routes.get("/model", dependencies=[read], tags=["model"])
    async def get_model(svc: Svc):
        return json_response(svc.model_info())

    @routes.put("/model", dependencies=[write], tags=["model"], openapi_extra=documents(SWAP),
           summary="Serve another model folder; requests keep being answered during the swap")
    async def put_model(request: Request, svc: Svc):
        body = validate(SWAP, await read_body(request), ["body"])
        try:
            info = await run_in_threadpool(svc.load_model, body.path)
        except (FileNotFoundError, ValueError) as exc:
            raise unprocessable([{"loc": ["body", "path"], "msg": str(exc), "type": "value_error"}]) from None
        settle_garbage_collector()
        return json_response(info)

