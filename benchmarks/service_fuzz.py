"""A long property-based fuzz of the HTTP API (schemathesis), with counts written to a file.

    python benchmarks/service_fuzz.py [--examples 300] [--timeout-s 5]

The same run as ``tests/test_service_fuzz.py`` — every operation of ``/openapi.json``, generated
valid and invalid requests, a key that may write, a small catalogue, every schemathesis check
(no 5xx; status codes, content types and bodies as documented; valid data accepted, invalid
data rejected, with the service's own semantic 422s allowed) — but with ``--examples`` per
operation. Writes ``benchmarks/results/service_fuzz.{json,md}``: requests by operation and
status, 5xx, answers slower than ``--timeout-s``, and every failing check with a reproduction.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=300, help="generated requests per operation (upper bound)")
    ap.add_argument("--timeout-s", type=float, default=5.0, help="an answer slower than this counts as a timeout")
    ap.add_argument("--out", type=Path, default=RESULTS / "service_fuzz")
    args = ap.parse_args()
    import schemathesis
    from fastapi.testclient import TestClient
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import positive_data_acceptance
    from test_service_fuzz import CATALOGUE, _by_design

    from leanrec.cost.hardware import machine_info
    from leanrec.experiment import versions
    from leanrec.scale.testing import HashEncoder
    from leanrec.service import ServiceConfig, create_app

    folder = Path(tempfile.mkdtemp(prefix="leanrec-fuzz-"))
    key = "w" * 8 + "-write-key-for-fuzzing"
    (folder / "keys.txt").write_text(f"write:{key}\n")
    (folder / "keys.txt").chmod(0o600)
    cfg = ServiceConfig(db=f"sqlite:///{folder / 'store.db'}", data_dir=str(folder / "data"),
                        api_key_file=str(folder / "keys.txt"))
    app = create_app(cfg, encoder=HashEncoder(), start_in_background=False)
    statuses: dict = collections.defaultdict(collections.Counter)
    slow: dict = collections.Counter()
    failures: dict = {}
    t0 = time.perf_counter()
    with TestClient(app) as client:
        r = client.post("/items", headers={"Authorization": f"Bearer {key}"},
                        json=[{"item_id": i, "text": t} for i, t in CATALOGUE.items()])
        assert r.status_code == 200, r.text
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        for result in schema.get_all_operations():
            op = result.ok()
            name = f"{op.method.upper()} {op.path}"

            def make(name=name, op=op):
                @settings(max_examples=args.examples, deadline=None, derandomize=True, database=None,
                          suppress_health_check=list(HealthCheck))
                @given(op.as_strategy())
                def run(case):
                    check(case, name)
                return run

            def check(case, name):
                headers = {"Authorization": f"Bearer {key}"}
                t = time.perf_counter()
                response = case.call(headers=headers)
                statuses[name][response.status_code] += 1
                if time.perf_counter() - t > args.timeout_s:
                    slow[name] += 1
                excluded = [positive_data_acceptance] if _by_design(response) else []
                case.validate_response(response, excluded_checks=excluded, headers=headers)

            print(f"fuzzing {name}", flush=True)
            try:
                make()()
            except Exception as exc:  # keep going: every operation is fuzzed
                failures[name] = str(exc)[:3000]
    total = sum(sum(c.values()) for c in statuses.values())
    five = sum(n for c in statuses.values() for s, n in c.items() if s >= 500)
    info = machine_info()
    doc = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "examples_per_operation": args.examples,
           "wall_s": round(time.perf_counter() - t0, 1), "requests": total, "server_errors": five,
           "timeouts": sum(slow.values()), "timeout_s": args.timeout_s, "failures": failures,
           "by_operation": {k: dict(sorted(v.items())) for k, v in statuses.items()},
           "machine": {"cpu_model": info["cpu_model"], "cores": info["logical_cores"]},
           "versions": {**versions(), "schemathesis": schemathesis.__version__ if hasattr(schemathesis, "__version__")
                        else None}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(doc, indent=2))
    codes = sorted({s for v in statuses.values() for s in v})
    lines = ["# Property-based fuzz of the HTTP API (schemathesis, every check)", "",
             f"{doc['date']} · up to {args.examples} generated requests per operation · in-process ASGI, SQLite, "
             f"{len(CATALOGUE)} items, a write key · {info['cpu_model']}, {info['logical_cores']} cores · "
             f"wall {doc['wall_s']:.0f} s", "",
             f"**{total:,} requests, {five} with a 5xx, {doc['timeouts']} slower than {args.timeout_s:g} s, "
             f"{len(failures)} operations with a failing check.**", "",
             "| operation | " + " | ".join(str(c) for c in codes) + " |", "|---|" + "---:|" * len(codes)]
    for name, c in statuses.items():
        lines.append(f"| `{name}` | " + " | ".join(str(c.get(s, 0)) for s in codes) + " |")
    for name, text in failures.items():
        lines += ["", f"## Failing: `{name}`", "", "```text", text, "```"]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:8]))
    sys.exit(1 if failures or five else 0)


if __name__ == "__main__":
    main()
