"""``python -m local_functions_host``: run a function app locally, like ``func start``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .host import DEFAULT_PORT, DEFAULT_SHUTDOWN_TIMEOUT, KUBERNETES_DRAIN_TIMEOUT, HostOptions, run_host


def parse_args(argv: Sequence[str] | None = None) -> HostOptions:
    parser = argparse.ArgumentParser(
        prog="python -m local_functions_host",
        description="Run an Azure Functions Python (v2) app locally: HTTP triggers on uvicorn, Service Bus "
        "triggers with azure-servicebus receivers configured from host.json.",
    )
    parser.add_argument("--script-root", default=".", type=Path,
                        help="folder holding host.json and the entry file (default: current folder)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None,
                        help=f"HTTP port (default: Host.LocalHttpPort of local.settings.json, else {DEFAULT_PORT})")
    parser.add_argument("--functions", default=None,
                        help="comma-separated names of the functions to run (default: all; also "
                        "AzureFunctionsJobHost__functions__N)")
    parser.add_argument("--shutdown-timeout", type=float, default=None,
                        help="seconds to let invocations under way finish on SIGTERM/SIGINT (default: "
                        f"{KUBERNETES_DRAIN_TIMEOUT:.0f} on Kubernetes, as the Functions host; else "
                        f"{DEFAULT_SHUTDOWN_TIMEOUT:.0f})")
    parser.add_argument("--cors", default=None,
                        help="comma-separated allowed origins, or * (default: Host.CORS of local.settings.json)")
    args = parser.parse_args(argv)
    functions = [name.strip() for name in args.functions.split(",") if name.strip()] if args.functions else None
    return HostOptions(
        script_root=args.script_root,
        host=args.host,
        port=args.port,
        functions=functions,
        shutdown_timeout=args.shutdown_timeout,
        cors=args.cors,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_host(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
