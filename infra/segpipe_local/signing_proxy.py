"""`segpipe ui --api-url URL`: the review page of a deployed stack, in a local browser.

The deployed HTTP API authorises with IAM (SigV4), which a browser cannot sign. This proxy
listens on 127.0.0.1 and forwards every request to the API, signed with the caller's own AWS
credentials (the usual boto3 chain: profile, SSO, environment), so access stays governed by IAM
(per project, through execute-api resource ARNs). Previews load straight from S3 through the
presigned URLs that the API hands out.

Because it signs with the operator's credentials, it answers its own page only: a foreign `Host`
(DNS rebinding) and a state-changing request from another site's page are refused with a 403
before anything is signed (`segpipe_local.local_origin`).
"""

from __future__ import annotations

import contextlib
import logging
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from segpipe_local.local_origin import guard, is_loopback

logger = logging.getLogger(__name__)

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "host",
    "content-length",
}


class SigningProxy:
    def __init__(self, api_url: str, *, region: str | None = None, session: Any = None) -> None:
        self._api = api_url.rstrip("/")
        self._session = session or boto3.Session()
        self._region = region or self._session.region_name or "us-east-1"

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        return self.forward(Request(environ))(environ, start_response)

    def forward(self, request: Request) -> Response:
        path = (
            "/ui/index.html" if request.path == "/ui/" else request.path
        )  # API Gateway has no route for "/ui/"
        url = self._api + path + (f"?{request.query_string.decode()}" if request.query_string else "")
        body = request.get_data() or None
        headers = {key: value for key, value in request.headers.items() if key.lower() not in _HOP_BY_HOP}
        credentials = self._session.get_credentials()
        if credentials is None:
            return Response('{"error":{"code":"no_credentials","message":"No AWS credentials found."}}', 401)
        signed = AWSRequest(method=request.method, url=url, data=body, headers=headers)
        SigV4Auth(credentials.get_frozen_credentials(), "execute-api", self._region).add_auth(signed)
        outgoing = urllib.request.Request(
            url, data=body, method=request.method, headers=dict(signed.headers.items())
        )
        try:
            with urllib.request.urlopen(outgoing, timeout=30) as answer:
                return _response(answer.status, answer.headers.items(), answer.read())
        except urllib.error.HTTPError as error:
            return _response(error.code, error.headers.items(), error.read())
        except OSError as error:
            logger.warning("the API did not answer: %s", error)
            return Response('{"error":{"code":"api_unreachable","message":"The API did not answer."}}', 502)


def _response(status: int, headers: Iterable[tuple[str, str]], body: bytes) -> Response:
    response = Response(body, status=status)
    for key, value in headers:
        if key.lower() not in _HOP_BY_HOP:
            response.headers[key] = value
    return response


def proxy_server(
    api_url: str, *, host: str = "127.0.0.1", port: int = 8080, region: str | None = None, session: Any = None
) -> BaseWSGIServer:
    """The proxy on a threaded server that answers its own page only (`segpipe_local.local_origin`):
    it signs with the operator's credentials, so another site's page must not reach it."""
    if not is_loopback(host):
        raise ValueError(f"the signing proxy listens on a loopback address only, not {host!r}")
    server: BaseWSGIServer = make_server(
        host, port, SigningProxy(api_url, region=region, session=session), threaded=True
    )
    guard(server, host=host)
    return server


def serve(api_url: str, *, host: str = "127.0.0.1", port: int = 8080, region: str | None = None) -> None:
    server = proxy_server(api_url, host=host, port=port, region=region)
    print(f"review page of {api_url}: http://{host}:{server.server_port}/ui/  (Ctrl-C to stop)", flush=True)  # noqa: T201
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
