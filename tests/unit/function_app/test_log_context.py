"""Every log line of the app carries its CorrelationId in the message text, which is all the Functions
worker forwards to the host."""

import logging

import pytest



@pytest.fixture(autouse=True, scope="module")
def app_imported():
    """Importing the app (as the worker does) installs the filters."""
    import functions_entry

    return functions_entry.app


@pytest.mark.parametrize("name", ["orders.service_layer", "orders.adapters.redis_accepted_records", "function_app"])
def test_correlation_id_is_in_the_message_of_app_loggers(name, caplog):
    with caplog.at_level(logging.INFO, logger=name):
        logging.getLogger(name).info("order processed", extra={"correlationId": "0f0e-cid"})

    assert caplog.records[-1].getMessage() == "order processed [correlationId=0f0e-cid]"
    assert caplog.records[-1].correlationId == "0f0e-cid"


def test_lines_without_a_correlation_id_are_left_alone(caplog):
    with caplog.at_level(logging.INFO, logger="function_app"):
        logging.getLogger("function_app").info("started")

    assert caplog.records[-1].getMessage() == "started"
