"""The intake's 202 answer: the links a client follows."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

from function_app.responses import accepted_response
from orders.service_layer.handlers import Accepted

CID = "0d3c1d4e-6f10-4c1c-9a3b-5f2f7f0f9c11"


def test_accepted_answer_names_the_status_url_and_the_notify_url_with_its_token():
    response = accepted_response(Accepted(CID, "123.sig", "1767225600000.sig"), "ws://127.0.0.1:9999/ws")
    body = json.loads(response.get_body())
    status_url = f"/api/orders/{CID}?receipt=1767225600000.sig"
    assert response.status_code == 202 and response.headers["Location"] == status_url
    assert body["status"] == "Accepted" and body["correlationId"] == CID
    assert body["statusUrl"] == status_url and body["notifyToken"] == "123.sig"
    notify = urlsplit(body["notifyUrl"])
    assert f"{notify.scheme}://{notify.netloc}{notify.path}" == "ws://127.0.0.1:9999/ws"
    assert parse_qs(notify.query) == {"correlationId": [CID], "token": ["123.sig"]}
