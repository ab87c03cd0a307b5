"""`segpipe ui`: requests reach the deployed API signed with SigV4 for execute-api."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from werkzeug.serving import make_server
from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

from segpipe_local.signing_proxy import SigningProxy


@pytest.fixture
def upstream() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        seen.append({"path": request.full_path, "headers": dict(request.headers), "body": request.get_data()})
        status = 404 if request.path == "/missing" else 200
        return Response('{"ok": true}', status=status, content_type="application/json")(
            environ, start_response
        )

    server = make_server("127.0.0.1", 0, app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", seen
    server.shutdown()


def _session() -> boto3.Session:
    return boto3.Session(
        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret", region_name="eu-west-1"
    )


def test_requests_are_forwarded_with_a_sigv4_signature(upstream: tuple[str, list[dict[str, Any]]]) -> None:
    url, seen = upstream
    client = Client(SigningProxy(url, session=_session()))

    answer = client.put("/projects/lab/models/1/threshold?x=1", json={"threshold": 0.4})

    assert answer.status_code == 200 and answer.get_json() == {"ok": True}
    (request,) = seen
    authorization = request["headers"]["Authorization"]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/execute-api/aws4_request" in authorization
    assert "X-Amz-Date" in request["headers"]
    assert request["path"] == "/projects/lab/models/1/threshold?x=1"
    assert request["body"] == b'{"threshold": 0.4}'


def test_the_page_root_maps_to_its_index_and_errors_pass_through(
    upstream: tuple[str, list[dict[str, Any]]],
) -> None:
    url, seen = upstream
    client = Client(SigningProxy(url, session=_session()))

    client.get("/ui/")
    missing = client.get("/missing")

    assert seen[0]["path"].rstrip("?") == "/ui/index.html"
    assert missing.status_code == 404


def test_without_credentials_nothing_is_sent(upstream: tuple[str, list[dict[str, Any]]]) -> None:
    url, seen = upstream

    class NoCredentials:
        region_name = "us-east-1"

        def get_credentials(self) -> None:
            return None

    answer = Client(SigningProxy(url, session=NoCredentials())).get("/projects/lab/models")

    assert answer.status_code == 401 and seen == []
