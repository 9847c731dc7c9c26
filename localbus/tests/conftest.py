"""Fixtures for the broker's conformance tests: a broker per module, talked to only through the SDK."""

from __future__ import annotations

import pytest
from azure.servicebus import ServiceBusClient

from localbus.embedded import running_broker

TEST_QUEUES = {
    "queues": [
        {"name": "orders", "requiresSession": True, "requiresDuplicateDetection": True},
        {"name": "order-status"},
        {"name": "plain"},
        {"name": "settle"},
        {"name": "dedup", "requiresDuplicateDetection": True, "duplicateDetectionHistoryTimeWindow": "PT2S"},
        {"name": "sess", "requiresSession": True, "lockDuration": "PT30S"},
        {"name": "sess-next", "requiresSession": True},
        {"name": "sess-excl", "requiresSession": True},
        {"name": "small", "maxMessageSizeInKilobytes": 4},
        {"name": "tiny", "maxSizeInMegabytes": 1},
    ]
}


@pytest.fixture(scope="module")
def broker():
    with running_broker(TEST_QUEUES) as b:
        yield b


@pytest.fixture(scope="module")
def client(broker):
    with ServiceBusClient.from_connection_string(broker.connection_string) as c:
        yield c
