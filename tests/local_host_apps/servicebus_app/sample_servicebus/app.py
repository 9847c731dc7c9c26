"""Service Bus triggers that record what they receive, so tests can check what the host handed them.

Each invocation appends one JSON line to ``$RECORD_DIR/<function>.jsonl``. The message body steers the
function: ``{"action": "ok"}``, ``{"action": "fail"}`` (raise), ``{"action": "sleep", "seconds": 1.5}``.
"""

import asyncio
import datetime
import json
import logging
import os
import threading
import time
import typing
from pathlib import Path

import azure.functions as func

app = func.FunctionApp()
log = logging.getLogger("sample_servicebus")
_lock = threading.Lock()


def _record(function: str, msg: func.ServiceBusMessage, phase: str, **extra: object) -> None:
    entry = {
        "phase": phase,
        "at": time.time(),
        "thread": threading.current_thread().name,
        "body": msg.get_body().decode("utf-8"),
        "message_id": msg.message_id,
        "session_id": msg.session_id,
        "correlation_id": msg.correlation_id,
        "content_type": msg.content_type,
        "delivery_count": msg.delivery_count,
        "sequence_number": msg.sequence_number,
        "enqueued_time_utc": _iso(msg.enqueued_time_utc),
        "locked_until": _iso(msg.locked_until),
        "lock_token": msg.lock_token,
        "application_properties": msg.application_properties,
        "user_properties": msg.user_properties,
        "subject": msg.subject,
        "reply_to": msg.reply_to,
        "to": msg.to,
        "time_to_live": None if msg.time_to_live is None else msg.time_to_live.total_seconds(),
        "dead_letter_source": msg.dead_letter_source,
        "dead_letter_reason": msg.dead_letter_reason,
        "dead_letter_error_description": msg.dead_letter_error_description,
        "metadata_keys": sorted((msg.metadata or {}).keys()),
        **extra,
    }
    path = Path(os.environ["RECORD_DIR"]) / f"{function}.jsonl"
    with _lock, path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(entry) + "\n")


def _iso(value: datetime.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


async def _act(function: str, msg: func.ServiceBusMessage) -> None:
    command = json.loads(msg.get_body() or b"{}")
    _record(function, msg, "start")
    if command.get("action") == "sleep":
        await asyncio.sleep(float(command.get("seconds", 1)))
    log.info("handled %s", msg.message_id)
    if command.get("action") == "fail":
        _record(function, msg, "raise")
        raise RuntimeError(f"asked to fail on {msg.message_id}")
    _record(function, msg, "end")


@app.service_bus_queue_trigger(
    arg_name="msg", queue_name="%WORK_QUEUE%", connection="ServiceBusConnection", is_sessions_enabled=True
)
async def process_session(msg: func.ServiceBusMessage) -> None:
    await _act("process_session", msg)


@app.service_bus_queue_trigger(
    arg_name="msg", queue_name="%WORK_QUEUE%/$DeadLetterQueue", connection="ServiceBusConnection"
)
def dead_letters(msg: func.ServiceBusMessage, context: func.Context) -> None:
    _record("dead_letters", msg, "end", invocation_id=context.invocation_id)


@app.service_bus_queue_trigger(arg_name="msg", queue_name="%PLAIN_QUEUE%", connection="ServiceBusConnection")
async def process_plain(msg: func.ServiceBusMessage) -> None:
    await _act("process_plain", msg)


@app.service_bus_queue_trigger(
    arg_name="msgs", queue_name="%BATCH_QUEUE%", connection="ServiceBusConnection", cardinality="many"
)
def process_batch(msgs: typing.List[func.ServiceBusMessage]) -> None:  # noqa: UP006 - the worker refuses list[...]
    for msg in msgs:
        _record("process_batch", msg, "end", batch_size=len(msgs))
