"""A small HTTP app exercising what the local host must carry through unchanged."""

import asyncio
import json
import logging
import os
import threading

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
log = logging.getLogger("sample_http")


@app.route(route="echo/{name}", methods=["GET", "POST"])
def echo(req: func.HttpRequest) -> func.HttpResponse:
    body = req.get_body()
    return func.HttpResponse(
        json.dumps({
            "method": req.method,
            "url": req.url,
            "route": dict(req.route_params),
            "params": dict(req.params),
            "headers": {k: req.headers.get(k) for k in ("x-test", "content-type", "accept")},
            "body": body.decode("utf-8"),
            "thread": threading.current_thread().name,
        }),
        mimetype="application/json",
        headers={"X-Echo": "yes"},
    )


@app.route(route="async/{value:int}", methods=["GET"])
async def async_number(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    await asyncio.sleep(0)
    log.info("async number called", extra={"correlationId": "cid-from-extra"})
    return func.HttpResponse(
        json.dumps({
            "value": int(req.route_params["value"]),
            "invocationId": context.invocation_id,
            "functionName": context.function_name,
            "thread": threading.current_thread().name,
        }),
        status_code=201,
        mimetype="application/json",
    )


@app.route(route="async/stats", methods=["GET"])
def stats(req: func.HttpRequest) -> str:
    return "literal wins"


@app.route(route="boom", methods=["GET"])
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise ValueError("the sample function failed on purpose")


@app.route(route="text", methods=["GET"])
def text(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("héllo", status_code=202, headers={"Set-Cookie": "a=1"})


@app.route(route="setting", methods=["GET"])
def setting(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps({
            "fromFile": os.environ.get("SAMPLE_FROM_FILE"),
            "overridden": os.environ.get("SAMPLE_OVERRIDDEN"),
            "cwd": os.getcwd(),
        }),
        mimetype="application/json",
    )


@app.route(route="slow", methods=["GET"])
async def slow(req: func.HttpRequest) -> func.HttpResponse:
    await asyncio.sleep(float(req.params.get("seconds", "1")))
    return func.HttpResponse("done")


@app.function_name("custom_name")
@app.route(methods=["DELETE"])
def default_route(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(status_code=204)


@app.route(route="slow_sync", methods=["GET"])
def slow_sync(req: func.HttpRequest) -> func.HttpResponse:
    import time

    time.sleep(float(req.params.get("seconds", "1")))
    return func.HttpResponse("done")
