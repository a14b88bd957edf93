"""The generated OpenAPI document, checked by a peer: schemathesis fuzzes every operation
with a staff token and checks each answer against the document.

Bounded (a few derandomised examples per operation, so a failure reproduces), no 500, every
status code documented, every body matching its documented schema and content type.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import checks as st_checks
from schemathesis.core.failures import Failure, FailureGroup

from hotline.users import add_user
from tests.conftest import Running
from tests.test_api import ELDER

EXAMPLES_PER_OPERATION = 8
SKIP = {("GET", "/api/v1/ws")}  # a WebSocket upgrade, covered by tests/test_console_feed.py

CHECKS = [
    st_checks.status_code_conformance,
    st_checks.content_type_conformance,
    st_checks.response_schema_conformance,
]


def _fuzz(doc: dict[str, Any], base_url: str, token: str) -> tuple[list[str], dict[str, int]]:
    """Run every operation; return the distinct failures and how many cases each operation ran."""
    schema = schemathesis.openapi.from_dict(doc)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    failures: set[str] = set()
    ran: dict[str, int] = {}
    for result in schema.get_all_operations():
        op = result.ok()
        if (op.method.upper(), op.path) not in SKIP:
            name = f"{op.method.upper()} {op.path}"
            ran[name] = _run(op, name, base_url, session, failures)
    return sorted(failures), ran


def _run(op: Any, name: str, base_url: str, session: requests.Session, failures: set[str]) -> int:
    documented = set(op.definition.raw["responses"])
    count = 0

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=op.as_strategy())
    def run(case: Any) -> None:
        nonlocal count
        count += 1
        response = case.call(base_url=base_url, session=session, timeout=30)
        status = response.status_code
        if status == 500 or (status >= 500 and str(status) not in documented):
            failures.add(f"{name}: {status}: {response.text[:300]}")
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as group:  # every failed check of this case in one
            failures.update(f"{name}: {f.title}: {str(f)[:300]}" for f in group.exceptions)
        except Failure as failure:
            failures.add(f"{name}: {failure.title}: {str(failure)[:300]}")

    run()
    return count


async def test_every_operation_answers_as_its_document_says(running: Running, http: aiohttp.ClientSession) -> None:
    admin = await add_user(running.settings, "fuzz-admin", "admin")
    async with http.post(f"{running.url}/api/v1/elders", json=ELDER, headers={"Authorization": f"Bearer {admin}"}) as r:
        assert r.status == 201  # one real elder, so that some generated requests get past the lookups
    async with http.get(f"{running.url}/api/v1/openapi.json") as r:
        doc = await r.json()
    failures, ran = await asyncio.to_thread(_fuzz, doc, running.url, admin)
    assert not failures, "\n".join(failures)
    documented = {f"{m.upper()} {p}" for p, ops in doc["paths"].items() for m in ops} - {"GET /api/v1/ws"}
    assert set(ran) == documented and all(n > 0 for n in ran.values()), ran
