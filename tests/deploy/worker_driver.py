"""Indexes a function app with the real Python worker library, as the Functions host would, and prints
what the worker reports as one JSON object.

Run in its own process (the worker keeps global state and imports the app's modules):
``python worker_driver.py <repository root> <script root>``. The protocol messages are the local host's
(built from the published protocol); the environment carries the app settings, PYTHON_SCRIPT_FILE_NAME
among them.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from types import SimpleNamespace


async def index(protos, script_root: str) -> dict:
    import azure_functions_runtime as worker

    # The process that hosts this library (the host's Python worker) starts in the script root and puts it
    # at the front of sys.path before the init request, so the entry file imports as a top-level module.
    os.chdir(script_root)
    sys.path.insert(0, script_root)

    init = protos.StreamingMessage(
        request_id="init",
        worker_init_request=protos.WorkerInitRequest(
            host_version="4.1040.0", function_app_directory=script_root, capabilities={}, log_categories={}),
    )
    init_response = await worker.worker_init_request(SimpleNamespace(
        request=init, properties={"protos": protos, "host": "127.0.0.1"}))
    metadata = protos.StreamingMessage(
        request_id="metadata",
        functions_metadata_request=protos.FunctionsMetadataRequest(function_app_directory=script_root),
    )
    metadata_response = await worker.functions_metadata_request(SimpleNamespace(
        request=metadata, properties={"protos": protos, "host": "127.0.0.1"}))
    return {
        # Where the app's modules were imported from (they must come from the script root).
        "modules": {name: getattr(sys.modules.get(name), "__file__", None)
                    for name in ("functions_entry", "function_app", "orders")},
        "init_status": protos.StatusResult.Status.Name(init_response.result.status),
        "init_exception": init_response.result.exception.message,
        "metadata_status": protos.StatusResult.Status.Name(metadata_response.result.status),
        "use_default_metadata_indexing": metadata_response.use_default_metadata_indexing,
        "functions": [
            {
                "name": meta.name,
                "script_file": meta.script_file,
                "directory": meta.directory,
                "bindings": {
                    name: {"type": info.type, "direction": protos.BindingInfo.Direction.Name(info.direction)}
                    for name, info in meta.bindings.items()
                },
                "raw_bindings": [json.loads(raw) for raw in meta.raw_bindings],
            }
            for meta in metadata_response.function_metadata_results
        ],
    }


def main() -> None:
    repository, script_root = sys.argv[1], sys.argv[2]
    sys.path.append(repository)  # after the script root, which index() puts first
    from local_functions_host.worker_protocol import load

    protos = load()

    result = asyncio.run(index(protos, script_root))
    sys.stdout.write("WORKER-RESULT " + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
