"""Starts and stops the whole system as real processes."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from local_identity.client import development_token
from local_identity.directory import DEV_AUDIENCE, DEV_WEBSOCKET_CLIENT_ID, DEV_WEBSOCKET_CLIENT_SECRET
from localbus.embedded import connection_string_for
from service_platform.notify_tokens import DEV_NOTIFY_TOKEN_SECRET
from websocket_service.settings import DEV_INTERNAL_SECRET
from local_stack.processes import ChildProcess
from local_servers.ports import ensure_ports_free, listening_socket, wait_for_http, wait_for_port
from local_servers.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class StackPorts:
    host: int = 7071
    websocket: tuple[int, ...] = (8080,)
    broker: int = 5682
    broker_http: int = 5683
    redis: int = 6380
    identity: int = 7075

    @classmethod
    def free(cls, websocket_instances: int = 1) -> StackPorts:
        """Port 0 everywhere: every server gets a free port at start, read back into ``LocalStack.ports``."""
        return cls(host=0, websocket=(0,) * websocket_instances, broker=0, broker_http=0, redis=0, identity=0)


@dataclass
class EmbeddedRedis:
    """fakeredis's Redis-compatible TCP server in a thread, for machines without redis-server."""

    port: int  # 0: a free one, picked at start
    _server: object = field(default=None, repr=False)

    def start(self) -> None:
        from fakeredis import TcpFakeServer

        server = TcpFakeServer(("127.0.0.1", self.port))
        server.daemon_threads = True
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True, name="embedded-redis").start()
        self._server = server
        wait_for_port(self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class LocalStack:
    """Broker, Redis, SQLite, local Functions host and WebSocket service(s) on the given ports.

    A port 0 is picked at start and read back into ``ports``. The stack binds the listening sockets of the
    host, the WebSocket instances and the identity provider itself and hands them over (each needs the
    others' URLs before it starts); the broker and Redis bind theirs and are asked which they got.
    ``environ`` values win over the stack's defaults, so any setting can point at Azure instead.
    """

    def __init__(self, data_dir: Path, ports: StackPorts | None = None, *, environ: Mapping[str, str] | None = None,
                 echo: IO[str] | None = None, prefer_real_redis: bool = True,
                 host_functions: list[str] | None = None, telemetry: bool = True) -> None:
        """``telemetry``: every service traces each order into ``<data_dir>/telemetry`` (as ``scripts/run``);
        off, nothing is traced, which tests and benchmarks of other things use (tracing costs CPU)."""
        self.data_dir = data_dir
        self.telemetry = telemetry
        self.ports = ports or StackPorts()
        self.echo = echo
        self.log_dir = data_dir / "logs"
        self._overrides = dict(environ or {})
        self._prefer_real_redis = prefer_real_redis
        self._host_functions = host_functions
        self.redis: RedisServer | EmbeddedRedis | None = None
        self.redis_kind = ""
        self.broker: ChildProcess | None = None
        self.host: ChildProcess | None = None
        self.identity: ChildProcess | None = None
        self.websockets: list[ChildProcess] = []
        self.env: dict[str, str] = {}

    # URLs a user or a test needs
    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.host}/api"

    @property
    def page_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.websocket[0]}/"

    def ws_url(self, instance: int = 0) -> str:
        return f"ws://127.0.0.1:{self.ports.websocket[instance]}/ws"

    @property
    def identity_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.identity}"

    @property
    def broker_status_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.broker_http}/queues"

    @property
    def connection_string(self) -> str:
        return self.env["ServiceBusConnection"]

    def start(self) -> None:
        """Start everything; if a part fails to start, what was started is stopped again."""
        listeners: list[socket.socket] = []
        try:
            self._start(listeners)
        except BaseException:
            self.stop()
            for listener in listeners:  # those not handed to a child yet
                listener.close()
            raise

    def _start(self, listeners: list[socket.socket]) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        ensure_ports_free({name: port for name, port in self._ports_to_bind().items() if port})
        self._start_redis()
        self._start_broker()
        host_listener = listening_socket(self.ports.host)
        listeners.append(host_listener)
        ws_listeners = [listening_socket(port) for port in self.ports.websocket]
        listeners += ws_listeners
        identity_listener = None if self._overrides.get("AUTH_ISSUER") else listening_socket(self.ports.identity)
        listeners += [identity_listener] if identity_listener is not None else []
        self.ports = dataclasses.replace(
            self.ports, host=host_listener.getsockname()[1],
            websocket=tuple(listener.getsockname()[1] for listener in ws_listeners),
            identity=self.ports.identity if identity_listener is None else identity_listener.getsockname()[1])
        self._start_identity_provider(identity_listener)
        self.env = self._environment()
        self._migrate_and_seed()
        self.host = self._child("host", self._host_args(), {**self.env, "OTEL_SERVICE_NAME": "orders-functions"},
                                listener=host_listener)
        self.start_host()
        for index, (port, listener) in enumerate(zip(self.ports.websocket, ws_listeners, strict=True)):
            ws = self._child(f"ws-{index}", ["-m", "websocket_service"], self._websocket_env(index, port),
                             listener=listener)
            self.websockets.append(ws)
            self.start_websocket(index)

    def _ports_to_bind(self) -> dict[str, int]:
        ports = {"Functions host": self.ports.host}
        if not self._overrides.get("AUTH_ISSUER"):
            ports["identity provider"] = self.ports.identity
        ports.update({f"WebSocket service {i}": port for i, port in enumerate(self.ports.websocket)})
        if not (self._overrides.get("ServiceBusConnection")
                or self._overrides.get("ServiceBusConnection__fullyQualifiedNamespace")):
            ports.update({"broker": self.ports.broker, "broker stats": self.ports.broker_http})
        if not self._overrides.get("REDIS_URL"):
            ports["Redis"] = self.ports.redis
        return ports

    def stop(self) -> None:
        for child in [*self.websockets, self.host, self.broker, self.identity]:
            if child is not None:
                child.stop()
        if self.redis is not None:
            self.redis.stop()

    def _host_args(self) -> list[str]:
        args = ["-m", "local_functions_host", "--script-root", str(ROOT), "--port", str(self.ports.host)]
        if self._host_functions:
            args += ["--functions", ",".join(self._host_functions)]
        return args

    def start_host(self, functions: list[str] | None = None) -> None:
        """Start the host; ``functions`` (after a stop) changes which functions it runs, None keeps them."""
        assert self.host is not None
        if functions is not None:
            self._host_functions = functions
            self.host.args = self._host_args()
        self.host.start()
        self._wait(self.host, f"http://127.0.0.1:{self.ports.host}/admin/host/status")

    def start_websocket(self, index: int) -> None:
        self.websockets[index].start()
        self._wait(self.websockets[index], f"http://127.0.0.1:{self.ports.websocket[index]}/healthz")

    def start_broker(self) -> None:
        """Start (or restart) the broker; the first start on port 0 reads the ports it bound from its ready
        line, and restarts bind those again, so clients reconnect to the same address."""
        assert self.broker is not None
        self.broker.args = self._broker_args()
        self.broker.start()
        ready = self.broker.wait_ready(30.0)
        if ready is None:
            raise RuntimeError(f"the broker did not become ready within 30s; its log ({self.broker.log_path}) "
                               f"ends with:\n{self.broker.tail()}")
        self.ports = dataclasses.replace(self.ports, broker=int(ready["amqpPort"]), broker_http=int(ready["httpPort"]))

    def _wait(self, child: ChildProcess, url: str, timeout: float = 30.0) -> None:
        """Wait until ``url`` answers. The socket was bound before the child started, so only an answer says
        the child serves it."""
        assert child.process is not None
        try:
            wait_for_http(url, child.process, timeout)
        except (RuntimeError, TimeoutError) as error:
            raise RuntimeError(
                f"{child.name}: {error}; its log ({child.log_path}) ends with:\n{child.tail()}") from None

    def _start_redis(self) -> None:
        if self._overrides.get("REDIS_URL"):
            self.redis_kind = "external"
            return
        if self._prefer_real_redis and shutil.which("redis-server"):
            workdir = self.data_dir / "redis"
            workdir.mkdir(exist_ok=True)
            self.redis = RedisServer(port=self.ports.redis, workdir=workdir)
            self.redis_kind = "redis-server"
        else:
            self.redis = EmbeddedRedis(port=self.ports.redis)
            self.redis_kind = "embedded (fakeredis)"
        self.redis.start()
        self.ports = dataclasses.replace(self.ports, redis=self.redis.port)

    def _start_broker(self) -> None:
        if self._overrides.get("ServiceBusConnection") or self._overrides.get(
                "ServiceBusConnection__fullyQualifiedNamespace"):
            return
        self.broker = self._child("broker", self._broker_args(), dict(os.environ))
        self.start_broker()

    def _broker_args(self) -> list[str]:
        return ["-m", "localbus", "--port", str(self.ports.broker), "--http-port", str(self.ports.broker_http),
                "--data-dir", str(self.data_dir / "broker")]

    def _start_identity_provider(self, listener: socket.socket | None) -> None:
        if listener is None:
            return
        self.identity = self._child("identity", [
            "-m", "local_identity", "serve", "--issuer", self.identity_url,
            "--data-dir", str(self.data_dir / "identity"), "--audience", DEV_AUDIENCE], dict(os.environ),
            listener=listener)
        self.identity.start()
        self._wait(self.identity, f"{self.identity_url}/.well-known/openid-configuration")

    def rotate_signing_key(self) -> str:
        """Rotate the local identity provider's signing key; returns the new key id."""
        import httpx

        return str(httpx.post(f"{self.identity_url}/rotate", timeout=10).json()["kid"])

    def token(self, user: str = "alice") -> str:
        """An access token of a development user from the local identity provider."""
        return development_token(self.identity_url, user)

    def backend_token(self) -> str:
        return development_token(self.identity_url)

    def _environment(self) -> dict[str, str]:
        defaults = {
            "FUNCTIONS_WORKER_RUNTIME": "python",
            "PYTHON_SCRIPT_FILE_NAME": "functions_entry.py",
            "ORDERS_QUEUE": "orders",
            "ORDER_STATUS_QUEUE": "order-status",
            "SQL_URL": f"sqlite:///{self.data_dir / 'orders.db'}",
            "REDIS_URL": f"redis://127.0.0.1:{self.ports.redis}/0",
            "NOTIFY_TOKEN_SECRET": DEV_NOTIFY_TOKEN_SECRET,
            "NOTIFY_PUBLIC_URL": self.ws_url(0) if self.ports.websocket else "ws://127.0.0.1:8080/ws",
            "WS_INTERNAL_SECRET": DEV_INTERNAL_SECRET,
            "STATUS_API_URL": self.api_url,
            "AUTH_ISSUER": self.identity_url,
            "AUTH_AUDIENCE": DEV_AUDIENCE,
            "STATUS_API_TOKEN_URL": f"{self.identity_url}/token",
            "STATUS_API_CLIENT_ID": DEV_WEBSOCKET_CLIENT_ID,
            "STATUS_API_CLIENT_SECRET": DEV_WEBSOCKET_CLIENT_SECRET,
            "WS_SIGN_IN_AUTHORITY": self.identity_url,
        }
        if self.telemetry:
            # Traces and metrics as OTLP JSON lines under the data dir (python -m local_traces reads them),
            # written half a second after each span ends; the worker continues the host's trace context.
            defaults |= {"LOCAL_TELEMETRY_DIR": str(self.data_dir / "telemetry"), "OTEL_BSP_SCHEDULE_DELAY": "500",
                         "OTEL_METRIC_EXPORT_INTERVAL": "10000", "PYTHON_ENABLE_OPENTELEMETRY": "true"}
        if self.broker is not None:
            defaults["ServiceBusConnection"] = connection_string_for(self.ports.broker)
        env = {**os.environ, **defaults, **self._overrides}
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _websocket_env(self, index: int, port: int) -> dict[str, str]:
        return {**self.env, "WS_HOST": "127.0.0.1", "WS_PORT": str(port), "WS_INSTANCE_ID": f"ws-{index}",
                "WS_INTERNAL_URL": f"http://127.0.0.1:{port}"}

    def _migrate_and_seed(self) -> None:
        for command in ("migrate", "seed"):
            result = subprocess.run(
                [sys.executable, "-m", "orders.adapters.sql", command, "--url", self.env["SQL_URL"]],
                cwd=ROOT, env=self.env, capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"database {command} failed:\n{result.stdout}{result.stderr}")

    def _child(self, name: str, args: list[str], env: dict[str, str] | None = None, *,
               listener: socket.socket | None = None) -> ChildProcess:
        return ChildProcess(name, args, env=env if env is not None else self.env, cwd=ROOT, log_dir=self.log_dir,
                            echo=self.echo, listener=listener)


@contextlib.contextmanager
def running_stack(data_dir: Path, ports: StackPorts | None = None, **options: object) -> Iterator[LocalStack]:
    stack = LocalStack(data_dir, ports, **options)  # type: ignore[arg-type]
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
