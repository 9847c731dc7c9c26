"""JSON log lines and the host.json levels that apply inside and outside invocations."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from local_functions_host.json_logging import InvocationLevelFilter, JsonFormatter, invocation_fields


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("functions", context=invocation_fields.get))
    handler.addFilter(InvocationLevelFilter(logging.WARNING, lambda name: logging.ERROR if name == "quiet" else logging.INFO))
    logger = logging.getLogger("test_local_host_logging")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_records_carry_the_invocation_and_extra_fields(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    token = invocation_fields.set({"functionName": "f", "invocationId": "i-1", "messageId": "m-1", "sessionId": None})
    try:
        logger.info("hello %s", "world", extra={"correlationId": "c-1"})
    finally:
        invocation_fields.reset(token)

    [line] = lines(stream)
    assert line["message"] == "hello world"
    assert line["level"] == "INFO"
    assert line["time"].endswith("Z") and line["service"] == "functions"
    assert (line["functionName"], line["invocationId"], line["messageId"], line["correlationId"]) == (
        "f", "i-1", "m-1", "c-1"
    )
    assert "sessionId" not in line


def test_exceptions_are_one_line_with_the_traceback(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    try:
        raise ValueError("bad")
    except ValueError:
        logger.exception("failed")

    [line] = lines(stream)
    assert "ValueError: bad" in line["exception"]
    assert len(stream.getvalue().splitlines()) == 1


def test_function_levels_apply_inside_invocations_and_default_outside(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    logger.info("host info is below the default level")
    for name in ("loud", "quiet"):
        token = invocation_fields.set({"functionName": name})
        try:
            logger.info(f"{name} info")
            logger.error(f"{name} error")
        finally:
            invocation_fields.reset(token)

    assert [line["message"] for line in lines(stream)] == ["loud info", "loud error", "quiet error"]
