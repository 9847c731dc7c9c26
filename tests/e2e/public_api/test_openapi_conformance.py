"""schemathesis (property-based API testing from the OpenAPI document) against the live local host, signed in:
no 5xx, and every answer matches the document (status codes, headers, content types, bodies).

Two checks are left out, each for a reason the document cannot change:
- ``positive_data_acceptance`` expects every schema-valid request to succeed, but the API refuses valid
  bodies for reasons no schema can state: a customerId that is not the caller's (403), units summed across
  lines (422), per-customer limits (429). Each of those answers is documented and checked for conformance.
- ``unsupported_method`` expects 405 for a method no route declares; the Functions host answers 404 there,
  in Azure as here.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from local_identity.client import development_token
from local_stack.stack import LocalStack, StackPorts

pytestmark = pytest.mark.e2e

SCHEMATHESIS = Path(sys.executable).parent / "st"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    # Generous limits: the generated traffic of one customer must not turn every later order into a 429.
    running = LocalStack(Path(tmp_path_factory.mktemp("schemathesis")), StackPorts.free(websocket_instances=0),
                         environ={"CUSTOMER_MAX_ORDERS_PER_MINUTE": "100000", "CUSTOMER_MAX_ORDERS_IN_FLIGHT": "100000"},
                         telemetry=False)
    try:
        running.start()
        yield running
    finally:
        running.stop()


def test_the_served_document_is_the_committed_one(stack: LocalStack) -> None:
    served = httpx.get(f"{stack.api_url}/openapi.json")  # public: no token
    assert served.status_code == 200 and served.headers["content-type"].startswith("application/json")
    assert served.content == (Path(__file__).resolve().parents[3] / "function_app" / "openapi.json").read_bytes()


@pytest.mark.parametrize("caller", ["alice", "backend"])
def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_document(stack: LocalStack, caller: str) -> None:
    token = development_token(stack.identity_url, None if caller == "backend" else caller)
    result = subprocess.run(
        [str(SCHEMATHESIS), "run", f"{stack.api_url}/openapi.json", "--header", f"Authorization: Bearer {token}",
         "--checks", "all", "--exclude-checks", "positive_data_acceptance,unsupported_method",
         "--max-examples", "25", "--seed", "20261201", "--generation-deterministic", "--no-color"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"schemathesis found failures:\n{result.stdout[-8000:]}\n{result.stderr[-2000:]}"
    assert "5xx" not in result.stdout.split("SUMMARY")[-1]
    assert (stack.log_dir / "host.log").read_text().count('"level": "ERROR"') == 0
