"""The ``$management`` node of each entity: lock renewal, settlement by lock token, deferred messages,
peek, scheduling, session locks and state, listing sessions. One method per operation; the reply's status
code comes from the store's error."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from proton import Message, symbol, timestamp

from . import codec
from .actions import VENDOR
from .entities import Consumer, Outcome, StoredMessage
from .errors import InvalidRequest, StoreError
from .link_state import LinkState
from .store import Store

DOTNET_MAX_DATETIME_MS = 253402300800000

Encoder = Callable[[StoredMessage, "float | None"], bytes]

_DISPOSITIONS = {"completed": Outcome.COMPLETE, "abandoned": Outcome.ABANDON, "suspended": Outcome.DEAD_LETTER,
                 "defered": Outcome.DEFER, "deferred": Outcome.DEFER}


def _lock_token_bytes(raw: Any) -> bytes:
    if isinstance(raw, uuid.UUID):
        return raw.bytes_le
    if isinstance(raw, (bytes, bytearray, memoryview)) and len(raw) == 16:
        return bytes(raw)
    return uuid.UUID(str(raw)).bytes_le


def _timestamp(epoch_seconds: float) -> timestamp:
    return timestamp(int(epoch_seconds * 1000))


class ManagementNode:
    """Answers requests made to ``<entity>/$management``."""

    def __init__(self, store: Store, encode: Encoder) -> None:
        self.store = store
        self.encode = encode
        self.operations: dict[str, Callable[[LinkState, dict[str, Any], float], tuple[int, dict]]] = {
            VENDOR + "renew-lock": self.renew_lock,
            VENDOR + "update-disposition": self.update_disposition,
            VENDOR + "receive-by-sequence-number": self.receive_by_sequence_number,
            VENDOR + "peek-message": self.peek,
            VENDOR + "schedule-message": self.schedule,
            VENDOR + "cancel-scheduled-message": self.cancel_scheduled,
            VENDOR + "renew-session-lock": self.renew_session_lock,
            VENDOR + "get-session-state": self.get_session_state,
            VENDOR + "set-session-state": self.set_session_state,
            VENDOR + "get-message-sessions": self.list_sessions,
        }

    def answer(self, link_state: LinkState, request: Message, now: float) -> Message:
        props = request.properties or {}
        operation = str(props.get("operation", ""))
        body = request.body if isinstance(request.body, dict) else {}
        body = {str(k): v for k, v in body.items()}
        status, description, result, error_condition = 200, "OK", {}, None
        try:
            handler = self.operations.get(operation)
            if handler is None:
                raise StoreError(f"Unsupported management operation {operation!r}.")
            status, result = handler(link_state, body, now)
        except StoreError as exc:
            status, description, error_condition = exc.status, exc.description, exc.condition
        except (KeyError, TypeError, ValueError) as exc:
            status, description = 400, f"Malformed {operation} request: {exc!r}"
            error_condition = InvalidRequest.condition
        properties = {"statusCode": status, "statusDescription": description}
        if error_condition:
            properties["errorCondition"] = symbol(error_condition)
        return Message(correlation_id=request.id, properties=properties, body=result)

    def _session_consumer(self, link_state: LinkState, body: dict) -> Consumer | None:
        session_id = body.get("session-id")
        return None if session_id is None else self.store.session_holder(link_state.path, str(session_id))

    # ----- operations ---------------------------------------------------------------------------
    def renew_lock(self, link_state, body, now):
        tokens = [_lock_token_bytes(t) for t in body["lock-tokens"]]
        expirations = self.store.renew_locks(tokens, now)
        return 200, {"expirations": [_timestamp(e) for e in expirations]}

    def update_disposition(self, link_state, body, now):
        status = str(body["disposition-status"]).lower()
        outcome = _DISPOSITIONS.get(status)
        if outcome is None:
            raise InvalidRequest(f"Unknown disposition-status {status!r}.")
        reason = body.get("deadletter-reason")
        description = body.get("deadletter-description")
        for raw in body["lock-tokens"]:
            self.store.settle_deferred_aware(_lock_token_bytes(raw), outcome, now, reason=reason,
                                             description=description)
        return 200, {}

    def receive_by_sequence_number(self, link_state, body, now):
        sequence_numbers = [int(s) for s in body["sequence-numbers"]]
        receive_and_delete = int(body.get("receiver-settle-mode", 1)) == 0
        session_id = body.get("session-id")
        messages = self.store.receive_deferred(
            link_state.path, sequence_numbers, now, self._session_consumer(link_state, body),
            receive_and_delete=receive_and_delete, session_id=None if session_id is None else str(session_id))
        out = []
        for m in messages:
            item: dict[str, Any] = {"message": self.encode(m, None if receive_and_delete else m.locked_until)}
            if not receive_and_delete:
                item["lock-token"] = uuid.UUID(bytes_le=m.lock_token)
            out.append(item)
        return 200, {"messages": out}

    def peek(self, link_state, body, now):
        session_id = body.get("session-id")
        messages = self.store.peek(link_state.path, int(body.get("from-sequence-number", 0)),
                                   int(body.get("message-count", 1)), None if session_id is None else str(session_id))
        if not messages:
            return 204, {}
        return 200, {"messages": [{"message": self.encode(m, None)} for m in messages]}

    def schedule(self, link_state, body, now):
        incoming = []
        for item in body["messages"]:
            message = codec.read_incoming(bytes(item["message"]))
            if message.session_id is None and item.get("session-id") is not None:
                message.session_id = str(item["session-id"])
            if message.message_id is None and item.get("message-id") is not None:
                message.message_id = str(item["message-id"])
            incoming.append(message)
        sequence_numbers = self.store.enqueue(link_state.path, incoming, now)
        return 200, {"sequence-numbers": [int(s or 0) for s in sequence_numbers]}

    def cancel_scheduled(self, link_state, body, now):
        self.store.cancel_scheduled(link_state.path, [int(s) for s in body["sequence-numbers"]])
        return 200, {}

    def renew_session_lock(self, link_state, body, now):
        expiry = self.store.renew_session(None, link_state.path, str(body["session-id"]), now)
        return 200, {"expiration": _timestamp(expiry)}

    def get_session_state(self, link_state, body, now):
        return 200, {"session-state": self.store.get_session_state(link_state.path, str(body["session-id"]), now)}

    def set_session_state(self, link_state, body, now):
        raw = body.get("session-state")
        self.store.set_session_state(link_state.path, str(body["session-id"]), None if raw is None else bytes(raw), now)
        return 200, {}

    def list_sessions(self, link_state, body, now):
        # ``last-updated-time`` at .NET's DateTime.MaxValue (or absent) asks for every session with messages
        # or state; any earlier time for sessions whose state was set after it.
        updated = body.get("last-updated-time")
        millis = None if updated is None else int(updated)
        after = None if millis is None or millis >= DOTNET_MAX_DATETIME_MS else millis / 1000.0
        ids = self.store.list_sessions(link_state.path, after)
        skip = int(body.get("skip", 0) or 0)
        top = int(body.get("top", len(ids)) or len(ids))
        ids = ids[skip: skip + top]
        if not ids:
            return 204, {}
        return 200, {"sessions-ids": ids, "skip": skip + len(ids)}
