"""The local stack's moto server answers SDK clients on its loopback address, and refuses a
foreign `Host` (DNS rebinding) and a cross-site state-changing request before moto sees them."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from segpipe_local.aws import MotoServer
from tests.helpers.stack_process import free_port, loopback_client


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    server = MotoServer(
        host="127.0.0.1", port=port, log_path=Path(tmp_path_factory.mktemp("moto")) / "moto.log"
    )
    server.start()
    try:
        yield port
    finally:
        server.stop()


def _send(port: int, method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, headers=headers)
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def test_sdk_clients_are_answered(moto: int) -> None:
    # Given an S3 client on the moto server's loopback endpoint
    s3 = loopback_client("s3", moto)
    # When it writes and reads an object / Then moto answers as usual
    s3.create_bucket(Bucket="guarded")
    s3.put_object(Bucket="guarded", Key="a.txt", Body=b"local data")
    assert s3.get_object(Bucket="guarded", Key="a.txt")["Body"].read() == b"local data"


def test_a_rebound_page_cannot_read_local_data(moto: int) -> None:
    # Given a page whose DNS name now points at 127.0.0.1: its requests carry its own Host
    status, body = _send(moto, "GET", "/guarded/a.txt", {"Host": f"evil.example:{moto}"})

    # Then moto never answers it
    assert status == 403
    assert json.loads(body)["error"]["code"] == "host_not_allowed"
    assert b"local data" not in body


def test_another_sites_page_cannot_write(moto: int) -> None:
    status, body = _send(
        moto,
        "PUT",
        "/guarded/b.txt",
        {"Host": f"127.0.0.1:{moto}", "Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    )

    assert status == 403
    assert json.loads(body)["error"]["code"] == "cross_origin_request"


def test_the_moto_process_refuses_to_listen_beyond_loopback() -> None:
    from segpipe_local import moto_process

    with pytest.raises(SystemExit):
        moto_process.main(["-H", "0.0.0.0", "-p", "9"])


def test_a_gateway_served_beyond_loopback_keeps_moto_and_sagemaker_on_loopback() -> None:
    from segpipe_local.config import LocalConfig

    config = LocalConfig(host="0.0.0.0")

    assert config.aws_endpoint.startswith("http://127.0.0.1:")
    assert config.sagemaker_endpoint.startswith("http://127.0.0.1:")
    assert config.api_url.startswith("http://0.0.0.0:")
