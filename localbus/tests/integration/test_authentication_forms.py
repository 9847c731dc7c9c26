"""Every way the SDK authenticates against a namespace, and the session listing filter.

Connection string, ``AzureNamedKeyCredential``, ``AzureSasCredential`` with the resource URI signed
URL-encoded (as the SDKs do) or as is (as many tools do), and a SAS token inside the connection string.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import quote_plus

import pytest
from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.exceptions import ServiceBusAuthenticationError

from localbus.embedded import running_broker

CONFIG = {"queues": [{"name": "auth"}, {"name": "listed", "requiresSession": True}]}


@pytest.fixture(scope="module")
def broker():
    with running_broker(CONFIG, in_memory=True) as b:
        yield b


def sas_token(resource: str, key_name: str, key: str, *, url_encoded: bool, ttl: int = 300) -> str:
    expiry = int(time.time()) + ttl
    signed = quote_plus(resource) if url_encoded else resource
    signature = base64.b64encode(hmac.new(key.encode(), f"{signed}\n{expiry}".encode(), hashlib.sha256).digest())
    return f"SharedAccessSignature sr={signed}&sig={quote_plus(signature.decode())}&se={expiry}&skn={key_name}"


def round_trip(client: ServiceBusClient) -> str:
    body = f"hello-{uuid.uuid4()}"
    with client.get_queue_sender("auth") as sender:
        sender.send_messages(ServiceBusMessage(body))
    with client.get_queue_receiver("auth", max_wait_time=5) as receiver:
        for message in receiver:
            receiver.complete_message(message)
            if str(message) == body:
                return body
    raise AssertionError("the message did not come back")


def namespace_client(broker, credential) -> ServiceBusClient:
    return ServiceBusClient(f"localhost:{broker.port}", credential, use_tls=False)


def test_connection_string(broker):
    with ServiceBusClient.from_connection_string(broker.connection_string) as client:
        assert round_trip(client)


def test_named_key_credential(broker):
    credential = AzureNamedKeyCredential(broker.broker.config.key_name, broker.broker.config.key)
    with namespace_client(broker, credential) as client:
        assert round_trip(client)


@pytest.mark.parametrize("url_encoded", [True, False], ids=["sr-url-encoded", "sr-as-is"])
@pytest.mark.parametrize("scope", ["namespace", "queue"])
def test_sas_credential_signed_over_the_resource_either_way(broker, url_encoded, scope):
    resource = f"sb://localhost:{broker.port}/" + ("auth" if scope == "queue" else "")
    config = broker.broker.config
    token = sas_token(resource, config.key_name, config.key, url_encoded=url_encoded)
    with namespace_client(broker, AzureSasCredential(token)) as client:
        assert round_trip(client)


def test_sas_token_in_the_connection_string(broker):
    config = broker.broker.config
    token = sas_token(f"sb://localhost:{broker.port}/", config.key_name, config.key, url_encoded=True)
    connection_string = (f"Endpoint=sb://localhost:{broker.port};SharedAccessSignature={token};"
                         "UseDevelopmentEmulator=true")
    with ServiceBusClient.from_connection_string(connection_string) as client:
        assert round_trip(client)


def test_a_token_signed_with_another_key_is_refused_saying_what_to_check(broker, caplog):
    config = broker.broker.config
    token = sas_token(f"sb://localhost:{broker.port}/", config.key_name, "not-the-key", url_encoded=True)
    with ServiceBusClient(f"localhost:{broker.port}", AzureSasCredential(token), use_tls=False, retry_total=0) as client, \
            pytest.raises(ServiceBusAuthenticationError):
        with client.get_queue_sender("auth") as sender:
            sender.send_messages(ServiceBusMessage("refused"))
    refused = [r for r in caplog.records if getattr(r, "event", None) == "auth-failed"]
    assert refused and "does not match its resource" in refused[-1].description


def test_sessions_listed_by_state_update_time(broker):
    with ServiceBusClient.from_connection_string(broker.connection_string) as client:
        with client.get_queue_sender("listed") as sender:
            sender.send_messages([ServiceBusMessage("a", session_id="only-messages"),
                                  ServiceBusMessage("b", session_id="old-state"),
                                  ServiceBusMessage("c", session_id="new-state")])
        with client.get_queue_receiver("listed", session_id="old-state") as receiver:
            receiver.session.set_state(b"first")
        time.sleep(0.05)
        between = datetime.now(timezone.utc)
        time.sleep(0.05)
        with client.get_queue_receiver("listed", session_id="new-state") as receiver:
            receiver.session.set_state(b"second")
        everything = set(client.list_queue_sessions("listed"))
        recent = set(client.list_queue_sessions("listed", state_updated_after=between))
        since_long_ago = set(client.list_queue_sessions("listed", state_updated_after=between - timedelta(hours=1)))
    assert {"only-messages", "old-state", "new-state"} <= everything
    assert recent == {"new-state"}
    assert since_long_ago == {"old-state", "new-state"}
