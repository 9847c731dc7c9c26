"""Who may use which entity: SharedAccessSignature tokens put on the ``$cbs`` node, and the check that a
link's address is covered by one of them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from urllib.parse import quote_plus, unquote_plus

from proton import Message

from .config import BrokerConfig
from .link_state import ConnectionState, entity_path

log = logging.getLogger("localbus.amqp")

SAS_PREFIX = "SharedAccessSignature "


class AuthError(Exception):
    pass


def _signature(key: str, resource: str, expiry: int) -> str:
    digest = hmac.new(key.encode(), f"{resource}\n{expiry}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify_sas(token: str, key_name: str, key: str, now: float) -> str:
    """Check a SharedAccessSignature; return the resource path (``sr``) it grants."""
    if not token.startswith(SAS_PREFIX):
        raise AuthError("The token is not a SharedAccessSignature; connect with a connection string that has "
                        "SharedAccessKeyName and SharedAccessKey.")
    raw: dict[str, str] = {}
    for part in token[len(SAS_PREFIX):].split("&"):
        name, _, value = part.partition("=")
        raw[name] = value
    missing = {"sr", "sig", "se", "skn"} - set(raw)
    if missing:
        raise AuthError(f"The SharedAccessSignature lacks {sorted(missing)}.")
    key_name_sent = unquote_plus(raw["skn"])
    if key_name_sent != key_name:
        raise AuthError(f"Unknown SharedAccessKeyName '{key_name_sent}': use the key name from the broker's config.")
    try:
        expiry = int(unquote_plus(raw["se"]))
    except ValueError:
        raise AuthError("The SharedAccessSignature has a non-numeric expiry (se).") from None
    if expiry < now:
        raise AuthError("The SharedAccessSignature has expired; request a new token.")
    # Service Bus checks the signature over ``sr`` as the token carries it. SDKs sign the URL-encoded
    # resource, tools often sign the raw URI: both forms are accepted, nothing else is.
    sent_resource = raw["sr"]
    resource = unquote_plus(sent_resource)
    signature = unquote_plus(raw["sig"])
    candidates = {sent_resource, resource, quote_plus(resource)}
    if not any(hmac.compare_digest(_signature(key, c, expiry), signature) for c in candidates):
        raise AuthError(f"The SharedAccessSignature's signature does not match its resource '{resource}' and "
                        f"expiry under key '{key_name}': sign 'sr' and 'se' with that key's SharedAccessKey.")
    return entity_path(resource).lower()


def authorize(connection: ConnectionState, path: str) -> None:
    """Raise ``AuthError`` unless a token put on this connection covers ``path``."""
    entity = path.lower().split("/$")[0]
    for granted in connection.authorized:
        granted = granted.split("/$")[0]
        if granted == "" or entity == granted or entity.startswith(granted + "/"):
            return
    raise AuthError(
        f"Unauthorized access to '{path}': no valid token was put on $cbs for it. Check the connection string's "
        "SharedAccessKeyName and SharedAccessKey."
    )


def put_token(request: Message, connection: ConnectionState, config: BrokerConfig) -> Message:
    """Answer a ``$cbs`` request: a valid ``put-token`` grants its resource to the connection."""
    props = request.properties or {}
    operation = props.get("operation")
    status, description = 202, "Accepted"
    if operation != "put-token":
        status, description = 400, f"Unsupported $cbs operation {operation!r}; only put-token is supported."
    else:
        try:
            connection.authorized.add(verify_sas(str(request.body), config.key_name, config.key, time.time()))
        except AuthError as exc:
            status, description = 401, str(exc)
            log.warning("token refused", extra={"event": "auth-failed", "description": description,
                                                "audience": props.get("name"), "peer": connection.peer})
    return Message(correlation_id=request.id,
                   properties={"status-code": status, "status-description": description})
