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

from leanrec.service import ServiceConfig, create_app  # noqa: E402

FUZZ_EXAMPLES = 15
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


def _fuzz(operation) -> None:
    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(operation.as_strategy())
    def run(case):
        case.call_and_validate(headers={"Authorization": f"Bearer {WRITE_KEY}"})

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
