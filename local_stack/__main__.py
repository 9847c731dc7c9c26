"""``python -m local_stack``: runs the whole system on local defaults until Ctrl-C."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from local_stack.stack import ROOT, LocalStack, StackPorts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=ROOT / ".local",
                        help="where the broker's messages, the SQLite database and the logs are kept (.local)")
    parser.add_argument("--websocket-instances", type=int, default=1, choices=range(1, 5),
                        help="how many WebSocket service instances to run (ports 8080, 8081, ...)")
    parser.add_argument("--quiet", action="store_true", help="write the services' logs only to the data dir")
    options = parser.parse_args()

    ports = StackPorts(websocket=tuple(8080 + i for i in range(options.websocket_instances)))
    stack = LocalStack(options.data_dir.resolve(), ports, environ=os.environ,
                       echo=None if options.quiet else sys.stdout)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    try:
        print(f"Starting the order-processing system (data in {stack.data_dir}) ...", flush=True)
        stack.start()
    except Exception as error:
        stack.stop()
        print(f"\nerror: {error}\nFix the cause above and run the command again.", file=sys.stderr)
        return 1
    broker = f"local broker on port {stack.ports.broker}" if stack.broker else "Service Bus from the environment"
    print(
        "\nThe system is running:\n"
        f"  Order page (browser)     {stack.page_url}\n"
        f"  Orders API               {stack.api_url}/orders, {stack.api_url}/products, {stack.api_url}/openapi.json\n"
        + (f"  Sign-in (development)    {stack.identity_url}; a token for curl: "
           ".venv/bin/python -m local_identity token alice\n" if stack.identity else
           f"  Sign-in                  {stack.env['AUTH_ISSUER']}\n") +
        f"  WebSocket notifications  {', '.join(stack.ws_url(i) for i in range(len(stack.ports.websocket)))}\n"
        f"  Broker                   {broker}" + (f", queues at {stack.broker_status_url}" if stack.broker else "") + "\n"
        f"  Redis                    {stack.redis_kind} on {stack.env['REDIS_URL']}\n"
        f"  SQL                      {stack.env['SQL_URL']}\n"
        f"  Logs                     {stack.log_dir}\n"
        "Press Ctrl-C to stop.\n", flush=True)
    while not stopping.wait(1.0):
        for child in [stack.identity, stack.broker, stack.host, *stack.websockets]:
            if child is not None and not child.running:
                print(f"\nerror: {child.name} stopped unexpectedly; its log ends with:\n{child.tail()}",
                      file=sys.stderr)
                stopping.set()
    print("\nStopping ...", flush=True)
    stack.stop()
    print("Stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
