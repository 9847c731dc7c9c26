"""The identity provider inside the calling process, on a free port: for tests and benchmarks."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from local_identity.directory import DEV_AUDIENCE
from local_identity.server import build_identity_app
from local_identity.signing_keys import SigningKeys


@dataclass
class EmbeddedIdentityProvider:
    issuer: str
    keys: SigningKeys
    app: object

    @property
    def jwks_requests(self) -> int:
        """How many times the JWKS was fetched so far."""
        return int(self.app.state.jwks_requests)  # type: ignore[attr-defined]


@contextlib.contextmanager
def serving_identity_provider(data_dir: Path, *, audience: str = DEV_AUDIENCE) -> Iterator[EmbeddedIdentityProvider]:
    """Serve the identity provider on 127.0.0.1 and a port the kernel picks, until the block ends."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    issuer = f"http://127.0.0.1:{listener.getsockname()[1]}"
    keys = SigningKeys(data_dir)
    app = build_identity_app(keys, issuer=issuer, audience=audience)
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True,
                              name="identity-provider")
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the embedded identity provider did not start")
        time.sleep(0.01)
    try:
        yield EmbeddedIdentityProvider(issuer, keys, app)
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()
