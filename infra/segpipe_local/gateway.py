"""The local HTTP gateway: each request becomes an API Gateway HTTP API (v2) event for the real
API handler, and its answer becomes the HTTP response, as API Gateway would do it.

It serves local data without credentials, so it answers its own page and clients outside a browser
only: a foreign `Host` and a cross-site state-changing request get a 403 before the handler runs
(`segpipe_local.local_origin`)."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.wrappers import Request, Response

from segpipe_local.events import http_api_event
from segpipe_local.functions import LocalFunction
from segpipe_local.server_thread import ServerThread

logger = logging.getLogger(__name__)

#: API Gateway's own payload limit (10 MB); the handler enforces its smaller one.
MAX_BODY = 10 * 1024 * 1024


class Gateway:
    def __init__(self, api: LocalFunction) -> None:
        self._api = api

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        response = self.handle(request)
        return response(environ, start_response)

    def handle(self, request: Request) -> Response:
        if (request.content_length or 0) > MAX_BODY:
            return Response(
                '{"message":"Request Entity Too Large"}', status=413, content_type="application/json"
            )
        body = request.get_data(cache=False)
        event = http_api_event(
            request.method,
            request.path,
            query=request.query_string.decode(),
            headers=dict(request.headers),
            body=body or None,
            source_ip=request.remote_addr or "127.0.0.1",
        )
        try:
            answer = self._api.invoke(event)
        except Exception:
            logger.exception("the API function failed")
            return Response(
                '{"message":"Internal Server Error"}', status=500, content_type="application/json"
            )
        return _to_response(answer)


def _to_response(answer: dict[str, Any]) -> Response:
    data: str | bytes = answer.get("body") or ""
    if answer.get("isBase64Encoded"):
        data = base64.b64decode(data)
    response = Response(data, status=int(answer.get("statusCode", 200)))
    for key, value in (answer.get("headers") or {}).items():
        response.headers[key] = value
    for key, values in (answer.get("multiValueHeaders") or {}).items():
        for value in values:
            response.headers.add(key, value)
    for cookie in answer.get("cookies") or []:
        response.headers.add("Set-Cookie", cookie)
    return response


class GatewayServer(ServerThread):
    """The gateway on a threaded WSGI server, in a background thread."""

    def __init__(self, api: LocalFunction, *, host: str, port: int) -> None:
        super().__init__(Gateway(api), host=host, port=port, name="gateway")
