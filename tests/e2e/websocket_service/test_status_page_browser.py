"""The order page in headless Chromium (Debian's /usr/bin/chromium, no browser download).

``test_page_on_the_whole_system`` is the feature test: the whole system (broker, local Functions host,
SQLite, Redis, WebSocket service) as real processes, a person's clicks, ``Completed`` on screen.

The two tests before it drive the same page against the real WebSocket service with the order API replaced
by ``FakeOrderApi``, a small real HTTP server in the test process: they pin down the page's own behaviour
(live updates over the socket, falling back to polling when the socket cannot be reached) independently
of the pipeline's timing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from service_platform.notify_tokens import DEFAULT_KEY_ID, NotifyTokenSigner
from local_stack.stack import StackPorts, running_stack
from local_servers.ports import free_port, listening_socket, popen_with_listener, wait_for_http

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[3]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
NOTIFY_SECRET = "page-test-notify-secret"
INTERNAL_SECRET = "page-test-internal-secret"

if not Path(CHROMIUM).exists():
    pytest.fail("Debian's chromium is not installed: run scripts/test (it installs it) or apt-get install -y chromium",
                pytrace=False)


class FakeOrderApi:
    """Products, intake and status shaped like the order API's contract; statuses are set by the test."""

    def __init__(self, notify_url: str) -> None:
        self.notify_url = notify_url
        self.orders: dict[str, dict] = {}
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/api/products":
                    self._reply(200, [
                        {"sku": "SKU-1", "name": "Espresso beans 1 kg", "unitPrice": "18.50", "currency": "EUR", "stock": 40},
                        {"sku": "SKU-2", "name": "Milk jug", "unitPrice": "9.90", "currency": "EUR", "stock": 0},
                    ])
                elif (cid := self.path.removeprefix("/api/orders/")) in api.orders:
                    self._reply(200, api.orders[cid])
                else:
                    self._reply(404, {"title": "Not Found", "status": 404})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                cid = str(uuid.uuid4())
                token = NotifyTokenSigner(DEFAULT_KEY_ID, NOTIFY_SECRET.encode()).issue(cid, 600)
                api.orders[cid] = {"correlationId": cid, "status": "Accepted", "orderId": None, "total": None,
                                   "currency": body["currency"], "reason": None, "updatedAt": "2026-01-01T00:00:00Z",
                                   "request": body, "idempotencyKey": self.headers.get("Idempotency-Key")}
                self._reply(202, {"correlationId": cid, "status": "Accepted", "statusUrl": f"/api/orders/{cid}",
                                  # Like the intake: the full URL, query included.
                                  "notifyUrl": f"{api.notify_url}?correlationId={cid}&token={token}",
                                  "notifyToken": token},
                            {"Location": f"/api/orders/{cid}"})

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/api"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def complete(self, cid: str, order_id: int, total: str) -> dict:
        self.orders[cid] |= {"status": "Completed", "orderId": order_id, "total": total}
        return {k: v for k, v in self.orders[cid].items() if k not in ("request", "idempotencyKey", "updatedAt")}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def browser_page() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(15000)
            yield page
        finally:
            browser.close()


@pytest.fixture
def ws_with_fake_api(redis_server) -> Iterator[tuple[str, FakeOrderApi, int]]:
    listener = listening_socket()  # the fake API hands out this instance's URL, so the port comes first
    port = listener.getsockname()[1]
    api = FakeOrderApi(f"ws://127.0.0.1:{port}/ws")
    log = tempfile.TemporaryFile()
    env = {**os.environ, "WS_INSTANCE_ID": "page", "REDIS_URL": redis_server.url,
           "STATUS_API_URL": api.url, "NOTIFY_TOKEN_SECRET": NOTIFY_SECRET, "WS_INTERNAL_SECRET": INTERNAL_SECRET,
           "WS_REGISTRY_PREFIX": f"page{uuid.uuid4().hex[:6]}:", "PYTHONPATH": str(ROOT)}
    process = popen_with_listener([sys.executable, "-m", "websocket_service"], listener, cwd=ROOT, env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", process)
        yield f"http://127.0.0.1:{port}", api, port
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()
        api.close()


def place_an_order(page, url: str) -> str:
    page.goto(url)
    page.get_by_label("Quantity of Espresso beans 1 kg").fill("2")
    assert page.get_by_label("Quantity of Milk jug").is_disabled(), "a sold-out product cannot be ordered"
    page.get_by_role("button", name="Place order").click()
    card = page.locator("#orders li").first
    card.locator(".badge").get_by_text("Accepted").wait_for()
    return card.locator(".cid").inner_text()


def test_page_shows_status_pushed_over_the_websocket(browser_page, ws_with_fake_api) -> None:
    base, api, _ = ws_with_fake_api
    page = browser_page
    cid = place_an_order(page, base + "/")
    assert api.orders[cid]["request"] == {"customerId": "c-demo", "currency": "EUR",
                                          "items": [{"sku": "SKU-1", "quantity": 2}]}
    assert api.orders[cid]["idempotencyKey"]
    card = page.locator("#orders li").first
    card.locator(".channel[data-mode=live]").wait_for()
    event = api.complete(cid, 17, "37.00") | {"updatedAt": "2026-01-01T00:00:02Z"}
    event.pop("status")
    response = httpx.post(f"{base}/internal/events", headers={"Authorization": f"Bearer {INTERNAL_SECRET}"},
                          json={"events": [event | {"status": "Completed"}]})
    assert response.status_code == 202 and response.json()["delivered"] == 1
    card.locator(".badge").get_by_text("Completed").wait_for(timeout=5000)
    assert card.locator(".order-id").inner_text() == "17"
    assert "37" in card.locator(".total").inner_text()


def test_a_failed_order_can_be_followed_again_after_an_operator_replays_it(browser_page, ws_with_fake_api) -> None:
    """The WebSocket contract's replay rule, as the page follows it: Failed ends the subscription; "Check
    again" reads the current status (the replay's Accepted, attempt 2) and subscribes for the outcome."""
    base, api, _ = ws_with_fake_api
    page = browser_page
    cid = place_an_order(page, base + "/")
    card = page.locator("#orders li").first
    card.locator(".channel[data-mode=live]").wait_for()

    def push(**fields: object) -> None:
        event = {k: v for k, v in (api.orders[cid] | fields).items() if k not in ("request", "idempotencyKey")}
        api.orders[cid] |= fields
        response = httpx.post(f"{base}/internal/events", headers={"Authorization": f"Bearer {INTERNAL_SECRET}"},
                              json={"events": [event]})
        assert response.status_code == 202, response.text

    push(status="Failed", reason="processing failed repeatedly: MaxDeliveryCountExceeded", attempt=1)
    card.locator(".badge").get_by_text("Failed").wait_for(timeout=5000)
    assert card.locator(".retry-note").is_visible()
    api.orders[cid] |= {"status": "Accepted", "reason": None, "attempt": 2}  # an operator replayed it

    card.get_by_role("button", name="Check again").click()
    card.locator(".badge").get_by_text("Accepted").wait_for(timeout=10000)
    assert not card.locator(".reason").is_visible() and not card.locator(".retry-note").is_visible()
    card.locator(".channel[data-mode=live]").wait_for(timeout=10000)
    push(status="Completed", orderId=21, total="37.00", attempt=2)
    card.locator(".badge").get_by_text("Completed").wait_for(timeout=5000)
    assert card.locator(".order-id").inner_text() == "21"
    assert card.locator(".badge").get_attribute("title") == "attempt 2"


def test_page_falls_back_to_polling_when_the_socket_is_unreachable(browser_page, ws_with_fake_api) -> None:
    base, api, _ = ws_with_fake_api
    api.notify_url = f"ws://127.0.0.1:{free_port()}/ws"  # nothing listens there
    page = browser_page
    cid = place_an_order(page, base + "/")
    card = page.locator("#orders li").first
    card.locator(".channel[data-mode=polling]").wait_for()
    api.complete(cid, 18, "37.00")
    card.locator(".badge").get_by_text("Completed").wait_for(timeout=10000)
    assert card.locator(".order-id").inner_text() == "18"


def test_page_on_the_whole_system(browser_page, tmp_path: Path) -> None:
    """Broker, Redis, SQLite, the identity provider, local Functions host and this service as real processes on
    free ports; a person signs in and clicks on the page; ``Completed`` pushed over the WebSocket (the status
    API is never polled)."""
    page = browser_page
    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if r.method == "GET" and "/api/orders/" in r.url else None)
    # The processor starts once the page follows the order, so that its status comes as a push (and the page's
    # timeline shows the push), not from the socket's first status read.
    http_only = ["submit_order", "get_order_status", "list_products", "health", "readiness", "openapi_document"]
    with running_stack(tmp_path / "stack", StackPorts.free(), environ={}, host_functions=http_only) as stack:
        page.goto(stack.page_url)
        page.get_by_role("button", name="Sign in").click()  # to the identity provider and back (PKCE)
        page.get_by_role("link", name="Alice (customer)").click()
        page.get_by_text("Signed in as Alice (customer)").wait_for()
        first = page.locator("#products tbody tr:not(.soldout)").first
        assert first.locator(".sku").inner_text() == "SKU-1", "SKUs are listed in natural order"
        stock_before = int(first.locator("td.num").nth(1).inner_text())
        first.locator("input[type=number]").fill("1")
        page.get_by_role("button", name="Place order").click()
        card = page.locator("#orders li").first
        card.locator(".channel").get_by_text("Live").wait_for(timeout=30000)
        stack.host.stop()
        stack.start_host(functions=[])  # every function
        card.locator(".badge").get_by_text("Completed").wait_for(timeout=30000)
        assert card.locator(".order-id").inner_text().strip().isdigit()
        assert card.locator(".channel").get_attribute("data-mode") == "done"
        page.locator("#products tbody tr").first.locator("td.num").nth(1).get_by_text(
            str(stock_before - 1), exact=True).wait_for(timeout=10000)
        # The order's journey, read back from the spans the services wrote under the stack's data dir.
        timeline = card.locator(".timeline")
        timeline.locator("tbody tr", has_text="push status").wait_for(state="attached", timeout=15000)
        # Each service exports its spans on its own, and the page draws what it has and asks again: the
        # push can be drawn before the restarted host's processing spans have reached their file.
        for phase in ("in the queue", "in processing", "to the socket"):
            timeline.locator(".phases", has_text=phase).wait_for(state="attached", timeout=15000)
        timeline.locator("summary").click()
        phases = timeline.locator(".phases").inner_text()
        for phase in ("in intake", "in the queue", "in processing", "to the socket"):
            assert phase in phases, phases
        steps = [row.strip() for row in timeline.locator("tbody tr td:nth-child(2)").all_inner_texts()]
        assert steps[0] == "POST /api/orders" and "send orders" in steps and "process orders" in steps
        services = set(timeline.locator("tbody tr td:nth-child(1)").all_inner_texts())
        assert services == {"orders-functions", "orders-websocket"}
    assert polls == [], "the status arrived by polling, not over the WebSocket"
