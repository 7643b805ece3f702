"""A bounded property-based fuzz of the HTTP API from its own OpenAPI document (schemathesis).

Every operation of ``/openapi.json`` gets generated requests — valid and invalid bodies, path
ids, query strings — sent with a key that may write, on a small catalogue, with every check
schemathesis has on: no 5xx, and every answer's status, content type and body documented.
The budget is bounded (``FUZZ_EXAMPLES`` per operation) so the suite stays fast; the long run
is ``python benchmarks/service_fuzz.py``.
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from _service import WRITE_KEY, HashEncoder, write_keys  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import positive_data_acceptance  # noqa: E402

from leanrec.service import ServiceConfig, create_app  # noqa: E402

FUZZ_EXAMPLES = 15
#: 422s for rules no JSON schema can state — an id that names nothing the service has, an id
#: repeated across a batch, a time outside [min_timestamp, now + max_future_s], arms whose shares
#: do not sum to 1 — come from the service's own checks (``InputError``: type "value_error",
#: the message without pydantic's "Value error," prefix); they are by design, not "valid data
#: rejected". Everything the schema states is checked by pydantic and FastAPI, whose errors
#: carry other types (or the prefix), and stays under the positive-data check.
CATALOGUE = {f"i{k}": f"item {k} crime drama space animation"[: 10 + 3 * k] for k in range(12)}


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    from fastapi.testclient import TestClient

    folder = tmp_path_factory.mktemp("fuzz")
    cfg = ServiceConfig(db=f"sqlite:///{folder / 'store.db'}", data_dir=str(folder / "data"),
                        api_key_file=str(write_keys(folder)))
    app = create_app(cfg, encoder=HashEncoder(), start_in_background=False)
    with TestClient(app) as client:  # start-up ran: the service is ready
        r = client.post("/items", headers={"Authorization": f"Bearer {WRITE_KEY}"},
                        json=[{"item_id": i, "text": t} for i, t in CATALOGUE.items()])
        assert r.status_code == 200, r.text
        yield schemathesis.openapi.from_asgi("/openapi.json", app)


def _by_design(response) -> bool:
    """A 422 every error of which comes from the service's own semantic checks (see above)."""
    if response.status_code != 422:
        return False
    detail = response.json().get("detail")
    return isinstance(detail, list) and bool(detail) and all(
        e.get("type") == "value_error" and not str(e.get("msg", "")).startswith("Value error,") for e in detail)


def _fuzz(operation) -> None:
    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(operation.as_strategy())
    def run(case):
        headers = {"Authorization": f"Bearer {WRITE_KEY}"}
        response = case.call(headers=headers)
        excluded = [positive_data_acceptance] if _by_design(response) else []
        case.validate_response(response, excluded_checks=excluded, headers=headers)

    run()


@pytest.mark.slow
def test_api_answers_as_documented(api_schema):
    failures = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        try:
            _fuzz(operation)
        except Exception as exc:  # every operation is fuzzed; all failures reported together
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)
