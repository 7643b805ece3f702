"""``/experiments``: start, list, read, stop and report online experiments."""

from fastapi import APIRouter, Request

from .bodies import EXPERIMENT, PathName, documents
from .deps import Http, call, json_response, read_body, validate


def add_routes(routes: APIRouter, http: Http) -> None:
    Svc, read, write = http.Svc, http.read, http.write

    @routes.post("/experiments", dependencies=[write], tags=["experiments"], status_code=201,
            openapi_extra=documents(EXPERIMENT), summary="Start an A/B test or an interleaving comparison")
    async def post_experiment(request: Request, svc: Svc):
        body = validate(EXPERIMENT, await read_body(request), ["body"])
        exp = await call(svc.create_experiment, body.model_dump(), thread=True)
        return json_response(exp, 201)

    @routes.get("/experiments", dependencies=[read], tags=["experiments"])
    async def list_experiments(svc: Svc):
        return json_response({"experiments": svc.experiments()})

    @routes.get("/experiments/{experiment_id}", dependencies=[read], tags=["experiments"])
    async def get_experiment(experiment_id: PathName, svc: Svc):
        return json_response(svc.experiment(experiment_id))

    @routes.post("/experiments/{experiment_id}/stop", dependencies=[write], tags=["experiments"],
            summary="Stop serving and attributing; the report stays readable")
    async def stop_experiment(experiment_id: PathName, svc: Svc):
        return json_response(await call(svc.stop_experiment, experiment_id, thread=True))

    @routes.get("/experiments/{experiment_id}/report", dependencies=[read], tags=["experiments"],
           summary="Per-arm CTR with 95% intervals, differences and p-values, SRM check (or interleaving wins)")
    async def experiment_report(experiment_id: PathName, svc: Svc):
        return json_response(await call(svc.experiment_report, experiment_id, thread=True))

