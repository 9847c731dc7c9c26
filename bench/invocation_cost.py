"""What the local host spends per invocation, apart from the function's own work (a phase of pipeline_bench).

Real Service Bus messages are received from an in-process local broker; a tiny function app with no-op
functions is indexed by the worker library. Per message, on one core, in one process:

- **function alone**: the no-op function called with a ready ``ServiceBusMessage`` (the floor);
- **host's own conversion** (how the host invoked before it went through the worker library): the
  binding data decoded by ``azure.functions``' converter into a ``ServiceBusMessage``, then a direct call;
- **worker library**: the host's binding data as protocol ``TypedData``, then ``invocation_request`` of the
  real worker library, which decodes it and calls the function (async on the loop; sync in its thread
  pool) and answers an ``InvocationResponse``.

HTTP likewise: a ``func.HttpRequest`` built and the function called directly, against ``RpcHttp`` through
the worker and the answer read back. Run in a child process: the worker library keeps global state.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import textwrap
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

APP = """
import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.service_bus_queue_trigger(arg_name="message", queue_name="q", connection="C")
async def on_message(message: func.ServiceBusMessage) -> None:
    message.get_body()


@app.service_bus_queue_trigger(arg_name="message", queue_name="q", connection="C")
def on_message_sync(message: func.ServiceBusMessage) -> None:
    message.get_body()


@app.route(route="orders", methods=["POST"])
async def submit(req: func.HttpRequest) -> func.HttpResponse:
    req.get_body()
    return func.HttpResponse('{"status":"Accepted"}', status_code=202, mimetype="application/json")
"""


@dataclass
class Cost:
    name: str
    microseconds: float
    spread: float


def measure(messages: int = 2000, rounds: int = 5) -> list[Cost]:
    """Each path's median µs per invocation over ``rounds`` rounds of ``messages`` invocations."""
    return asyncio.run(_measure(messages, rounds))


async def _measure(count: int, rounds: int) -> list[Cost]:
    from azure.functions import meta
    from azure.functions import HttpRequest
    from azure.functions.servicebus import ServiceBusMessageInConverter
    from azure.servicebus import ServiceBusMessage
    from azure.servicebus.aio import ServiceBusClient

    from local_functions_host import binding_data
    from local_functions_host.http_app import _return_value
    from local_functions_host.worker import InProcessWorker
    from localbus.embedded import running_broker

    root = Path(tempfile.mkdtemp(prefix="invocation-cost-"))
    (root / "function_app.py").write_text(textwrap.dedent(APP))
    os.environ["PYTHON_SCRIPT_FILE_NAME"] = "function_app.py"
    sys.path.insert(0, str(root))
    worker = InProcessWorker()
    functions = {f.name: f.function_id for f in worker.index(root)}
    protos = worker.protos
    module = sys.modules["function_app"]

    with running_broker({"queues": [{"name": "q"}]}) as broker:
        async with ServiceBusClient.from_connection_string(broker.connection_string) as client:
            async with client.get_queue_sender("q") as sender:
                for start in range(0, count, 200):
                    await sender.send_messages([
                        ServiceBusMessage(json.dumps({"n": n}), message_id=str(uuid.uuid4()), session_id=None,
                                          correlation_id=str(uuid.uuid4()), content_type="application/json",
                                          application_properties={"schemaVersion": 1})
                        for n in range(start, min(count, start + 200))])
            received = []
            async with client.get_queue_receiver("q", receive_mode="receiveanddelete") as receiver:
                while len(received) < count:
                    received.extend(await receiver.receive_messages(max_message_count=200, max_wait_time=5))

    def host_conversion(message: Any) -> Any:
        values = binding_data.message_values(message)
        metadata = {name: meta.Datum(value, "string") if isinstance(value, str)
                    else meta.Datum(json.dumps(value, default=binding_data._json_value), "json")
                    for name, value in values.items() if value is not None}
        return ServiceBusMessageInConverter.decode(meta.Datum(binding_data.message_body(message), "bytes"),
                                                   trigger_metadata=metadata)

    prepared = [host_conversion(m) for m in received]

    async def function_alone() -> None:
        for message in prepared:
            await module.on_message(message)

    async def own_conversion() -> None:
        for message in received:
            await module.on_message(host_conversion(message))

    async def through_worker(name: str) -> None:
        for message in received:
            data, metadata = binding_data.single_message(message, protos)
            binding = protos.ParameterBinding(name="message", data=data)
            await worker.invoke(functions[name], str(uuid.uuid4()), [binding], metadata)

    body = json.dumps({"customerId": "c-1", "currency": "EUR", "items": [{"sku": "SKU-1", "quantity": 1}]}).encode()
    headers = {"content-type": "application/json", "authorization": "Bearer x" * 40, "host": "127.0.0.1:7071"}

    async def http_direct() -> None:
        for _ in range(count):
            request = HttpRequest("POST", "http://127.0.0.1:7071/api/orders", headers=headers, params={},
                                  route_params={}, body=body)
            response = await module.submit(request)
            response.get_body()

    async def http_worker() -> None:
        for _ in range(count):
            rpc = protos.RpcHttp(method="POST", url="http://127.0.0.1:7071/api/orders", headers=headers,
                                 body=protos.TypedData(bytes=body))
            binding = protos.ParameterBinding(name="req", data=protos.TypedData(http=rpc))
            response = await worker.invoke(functions["submit"], str(uuid.uuid4()), [binding], {})
            _return_value(response).http.body.bytes  # noqa: B018 - read the answer back as the host does

    paths = [
        ("Service Bus: function alone (the floor)", function_alone),
        ("Service Bus: host's own conversion + direct call (before)", own_conversion),
        ("Service Bus: worker library, async function (after)", lambda: through_worker("on_message")),
        ("Service Bus: worker library, sync function in its thread pool (after)",
         lambda: through_worker("on_message_sync")),
        ("HTTP: func.HttpRequest + direct call (before)", http_direct),
        ("HTTP: RpcHttp through the worker library (after)", http_worker),
    ]
    samples: dict[str, list[float]] = {name: [] for name, _ in paths}
    for _ in range(rounds):
        for name, run in paths:  # interleaved, so a noisy moment hits every path alike
            started = time.process_time()
            await run()
            samples[name].append((time.process_time() - started) / count * 1e6)
    worker.close()
    return [Cost(name, statistics.median(values), max(values) - min(values)) for name, values in samples.items()]
