"""Preview URLs: SigV4 presigns against the bucket's regional virtual-hosted endpoint on AWS, and
against the configured endpoint on the local stack, made with the handlers' own S3 client."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from segpipe.dal.s3 import S3ArtifactStore
from segpipe.handlers import runtime

BUCKET = "segpipe-data-1a2b3c"
KEY = "projects/lab/models/1/previews/test/img 01.png"


@pytest.fixture
def handler_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """The environment a Lambda has: credentials and a region, no custom endpoint."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token")
    runtime.reset()
    yield monkeypatch
    runtime.reset()


def _presign(region: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_DEFAULT_REGION", region)
    monkeypatch.setenv("AWS_REGION", region)
    runtime.reset()
    return S3ArtifactStore(runtime._client("s3"), BUCKET).presign_get(KEY, expires_in=600)


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1", "eu-central-1", "ap-southeast-2"])
def test_presigns_are_sigv4_on_the_regional_virtual_hosted_endpoint(
    handler_s3: pytest.MonkeyPatch, region: str
) -> None:
    # Given the handlers' own S3 client in a region (us-east-1 and eu-west-1 are where botocore
    # falls back to SigV2 and the global endpoint unless told otherwise)
    # When a preview URL is presigned
    url = _presign(region, handler_s3)

    # Then it is SigV4, scoped to the region, on https://{bucket}.s3.{region}.amazonaws.com
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Credential"][0].endswith(f"/{region}/s3/aws4_request")
    assert query["X-Amz-Expires"] == ["600"]
    assert "Signature" not in query and "AWSAccessKeyId" not in query
    assert parts.scheme == "https" and parts.netloc == f"{BUCKET}.s3.{region}.amazonaws.com"
    assert parts.path == "/projects/lab/models/1/previews/test/img%2001.png"


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:8001", "http://localhost:8001", "http://[::1]:8001"])
def test_with_a_custom_endpoint_presigns_stay_sigv4_and_go_to_it(
    handler_s3: pytest.MonkeyPatch, endpoint: str
) -> None:
    # Given the local stack's environment: the moto server as the endpoint of every service
    handler_s3.setenv("AWS_ENDPOINT_URL", endpoint)

    # When a preview URL is presigned
    url = _presign("us-east-1", handler_s3)

    # Then it is SigV4 and goes to that endpoint, path style (no bucket in the host name)
    parts = urlsplit(url)
    assert parse_qs(parts.query)["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert f"{parts.scheme}://{parts.netloc}" == endpoint
    assert parts.path.startswith(f"/{BUCKET}/projects/lab/")


def test_the_s3_specific_endpoint_wins_over_the_global_one(handler_s3: pytest.MonkeyPatch) -> None:
    handler_s3.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9999")
    handler_s3.setenv("AWS_ENDPOINT_URL_S3", "http://localhost:8001")

    parts = urlsplit(_presign("eu-west-1", handler_s3))

    assert parts.netloc == "localhost:8001" and parts.path.startswith(f"/{BUCKET}/")


@pytest.mark.parametrize(
    ("region", "endpoint", "origin"),
    [
        ("us-east-1", None, f"https://{BUCKET}.s3.us-east-1.amazonaws.com"),
        ("eu-west-1", None, f"https://{BUCKET}.s3.eu-west-1.amazonaws.com"),
        ("cn-north-1", None, f"https://{BUCKET}.s3.cn-north-1.amazonaws.com.cn"),
        ("us-east-1", "http://127.0.0.1:8001", "http://127.0.0.1:8001"),
        ("us-east-1", "http://localhost:8001/", "http://localhost:8001"),
        ("eu-west-1", "https://minio.example.org", "https://minio.example.org"),
        ("us-east-1", "http://[::1]:8001/some/path", "http://[::1]:8001"),
    ],
)
def test_preview_origin(region: str, endpoint: str | None, origin: str) -> None:
    from segpipe.dal.s3 import preview_origin

    assert preview_origin(BUCKET, region, endpoint) == origin


@pytest.mark.parametrize(
    ("region", "endpoint"),
    [
        ("us-east-1", None),
        ("eu-west-1", None),
        ("cn-north-1", None),
        ("us-east-1", "http://localhost:8001"),
        ("eu-west-1", "http://127.0.0.1:8001"),
    ],
)
def test_preview_origin_is_the_origin_of_the_presigned_urls(
    handler_s3: pytest.MonkeyPatch, region: str, endpoint: str | None
) -> None:
    from segpipe.dal.s3 import preview_origin

    if endpoint:
        handler_s3.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    parts = urlsplit(_presign(region, handler_s3))

    assert f"{parts.scheme}://{parts.netloc}" == preview_origin(BUCKET, region, endpoint)


def test_configured_endpoints_can_be_ignored_as_the_sdks_allow(handler_s3: pytest.MonkeyPatch) -> None:
    handler_s3.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:8001")
    handler_s3.setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")

    parts = urlsplit(_presign("eu-west-1", handler_s3))

    assert parts.netloc == f"{BUCKET}.s3.eu-west-1.amazonaws.com"
