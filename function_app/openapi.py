"""HTTP trigger: the API's OpenAPI 3.1 document (``GET /api/openapi.json``), public.

The document is committed next to this module and served as it is; a test proves it matches the routes.
"""

from __future__ import annotations

import functools
from pathlib import Path

import azure.functions as func

DOCUMENT = Path(__file__).with_name("openapi.json")

blueprint = func.Blueprint()


@functools.cache
def _document() -> bytes:
    return DOCUMENT.read_bytes()


@blueprint.function_name("openapi_document")
@blueprint.route(route="openapi.json", methods=["GET"])
def openapi_document(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(_document(), mimetype="application/json", headers={"Cache-Control": "max-age=300"})
