"""The local gateway and `segpipe ui`'s signing proxy answer their own page only: a foreign `Host`
(DNS rebinding) and a cross-site state-changing request never reach the API; the page itself and
clients outside a browser keep working.

Both servers run for real on a loopback port; the API behind them is a recording stub."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from werkzeug.serving import make_server
from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

from segpipe_local.client import SegpipeClient
from segpipe_local.gateway import GatewayServer

OK = '{"ok": true}'


@dataclass
class Served:
    port: int
    seen: list[tuple[str, str]] = field(default_factory=list)  # (method, path) that reached the API

    def send(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None
    ) -> tuple[int, Any]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        all_headers = {"Host": f"127.0.0.1:{self.port}", **(headers or {})}
        try:
            connection.request(method, path, body=body, headers=all_headers)
            answer = connection.getresponse()
            text = answer.read()
        finally:
            connection.close()
        return answer.status, json.loads(text) if text else None


class RecordingApi:
    """Stands in for the API function behind the gateway."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        http_ = event["requestContext"]["http"]
        self.seen.append((http_["method"], http_["path"]))
        return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": OK}


@pytest.fixture(scope="module")
def gateway_server() -> Iterator[Served]:
    api = RecordingApi()
    server = GatewayServer(api, host="127.0.0.1", port=0)  # type: ignore[arg-type]
    server.start()
    try:
        yield Served(server.port, api.seen)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def proxy_server() -> Iterator[Served]:
    from segpipe_local.signing_proxy import proxy_server as make_proxy

    seen: list[tuple[str, str]] = []

    def deployed_api(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        seen.append((request.method, request.path))
        return Response(OK, content_type="application/json")(environ, start_response)

    upstream = make_server("127.0.0.1", 0, deployed_api, threaded=True)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    session = boto3.Session(
        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret", region_name="eu-west-1"
    )
    server = make_proxy(f"http://127.0.0.1:{upstream.server_port}", host="127.0.0.1", port=0, session=session)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield Served(int(server.server_port), seen)
    finally:
        server.shutdown()
        upstream.shutdown()


@pytest.fixture(params=["gateway", "proxy"])
def served(request: pytest.FixtureRequest) -> Served:
    """One server per module (a werkzeug server takes half a second to shut down), with what
    reached its API cleared for each test."""
    value: Served = request.getfixturevalue(f"{request.param}_server")
    value.seen.clear()
    return value


STOP = "/projects/lab/models/3/stop"


def test_a_same_origin_get_reaches_the_api(served: Served) -> None:
    status, body = served.send(
        "GET", "/projects/lab/models", {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"}
    )

    assert status == 200 and body == {"ok": True}
    assert served.seen == [("GET", "/projects/lab/models")]


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost", "LOCALHOST", "[::1]"])
def test_every_loopback_name_with_the_bound_port_is_accepted(served: Served, name: str) -> None:
    status, _ = served.send("GET", "/projects/lab/models", {"Host": f"{name}:{served.port}"})

    assert status == 200 and len(served.seen) == 1


@pytest.mark.parametrize(
    "host",
    [
        "attacker.example:{port}",
        "attacker.example",
        "127.0.0.1",
        "127.0.0.1:1",
        "localhost.attacker.example:{port}",
    ],
)
def test_a_foreign_host_never_reaches_the_api(served: Served, host: str) -> None:
    # Given a page whose DNS name was rebound to 127.0.0.1: to the browser, the server is its origin
    status, body = served.send("GET", "/projects/lab/models", {"Host": host.format(port=served.port)})

    assert status == 403 and body["error"]["code"] == "host_not_allowed"
    assert set(body["error"]) == {"code", "message", "context"}
    assert served.seen == []


def test_a_rebound_page_cannot_post_either(served: Served) -> None:
    host = f"attacker.example:{served.port}"
    status, body = served.send("POST", STOP, {"Host": host, "Origin": f"http://{host}"})

    assert status == 403 and body["error"]["code"] == "host_not_allowed" and served.seen == []


@pytest.mark.parametrize(
    "headers",
    [
        # a fetch(..., {method: "POST", body: "..."}) with a text/plain body from another site
        {"Origin": "https://attacker.example", "Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"},
        # a plain HTML form post from another site
        {
            "Origin": "https://attacker.example",
            "Sec-Fetch-Site": "cross-site",
            "Sec-Fetch-Mode": "navigate",
            "Content-Type": "application/x-www-form-urlencoded",
        },
        # another local server (a different port is same-site, not same-origin)
        {"Origin": "http://127.0.0.1:9", "Sec-Fetch-Site": "same-site"},
        # a sandboxed frame or a redirected request
        {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "null"},
        # either header alone is enough to tell
        {"Origin": "https://attacker.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "https://127.0.0.1.attacker.example"},
    ],
)
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_a_cross_site_state_changing_request_never_reaches_the_api(
    served: Served, headers: dict[str, str], method: str
) -> None:
    status, body = served.send(method, STOP, headers, body=b'{"threshold": 0.1}')

    assert status == 403 and body["error"]["code"] == "cross_origin_request"
    assert set(body["error"]) == {"code", "message", "context"}
    assert served.seen == []


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost", "[::1]"])
def test_the_page_itself_can_post(served: Served, name: str) -> None:
    # What a browser sends for the review page's own fetch(..., {method: "POST"})
    origin = f"http://{name}:{served.port}"
    headers = {"Host": f"{name}:{served.port}", "Origin": origin, "Sec-Fetch-Site": "same-origin"}

    status, _ = served.send("POST", STOP, headers, body=b"{}")
    put_status, _ = served.send(
        "PUT", "/projects/lab/models/3/threshold", {**headers, "Content-Type": "application/json"}, b"{}"
    )

    assert status == put_status == 200
    assert served.seen == [("POST", STOP), ("PUT", "/projects/lab/models/3/threshold")]


def test_clients_outside_a_browser_can_post(served: Served) -> None:
    # curl, SDK scripts: neither Origin nor Sec-Fetch-Site
    status, _ = served.send("POST", STOP, {"Content-Type": "application/json"}, body=b"{}")
    # the CLI's own client
    answer = SegpipeClient(f"http://127.0.0.1:{served.port}").request("POST", "/projects/lab/trainings", {})

    assert status == 200 and answer == {"ok": True}
    assert served.seen == [("POST", STOP), ("POST", "/projects/lab/trainings")]


def test_the_gateway_refuses_in_process_too() -> None:
    # The guard is middleware: werkzeug's test client (Host "localhost", no port) is a foreign Host
    from segpipe_local.local_origin import LocalOnly, LocalOrigin

    reached: list[str] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        reached.append(environ["PATH_INFO"])
        return Response(OK)(environ, start_response)

    client = Client(LocalOnly(app, LocalOrigin(8000)))

    assert client.get("/x").status_code == 403
    assert client.get("/x", headers={"Host": "localhost:8000"}).status_code == 200
    assert (
        client.post("/x", headers={"Host": "localhost:8000", "Origin": "http://localhost:8000"}).status_code
        == 200
    )
    assert (
        client.post("/x", headers={"Host": "localhost:8000", "Origin": "http://localhost:8001"}).status_code
        == 403
    )
    assert reached == ["/x", "/x"]


def test_a_server_bound_to_another_address_also_answers_for_it() -> None:
    from segpipe_local.local_origin import LocalOrigin

    origin = LocalOrigin(8000, host="192.0.2.7")

    assert origin.refusal("GET", {"Host": "192.0.2.7:8000"}) is None
    assert origin.refusal("GET", {"Host": "127.0.0.1:8000"}) is None
    assert origin.refusal("POST", {"Host": "192.0.2.7:8000", "Origin": "http://192.0.2.7:8000"}) is None
    assert LocalOrigin(8000, host="0.0.0.0").hosts == LocalOrigin(8000).hosts


def test_the_signing_proxy_listens_on_loopback_only() -> None:
    from segpipe_local.signing_proxy import proxy_server as make_proxy

    with pytest.raises(ValueError, match="loopback"):
        make_proxy("https://api.example", host="0.0.0.0", port=0)
