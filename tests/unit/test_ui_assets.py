"""The review page's assets through the real API handler: text as text, images as bytes
(base64 for API Gateway), and a Content-Security-Policy that lets images come only from the page
itself and the data bucket's preview origin."""

from __future__ import annotations

import base64
import importlib
import io
import re
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from PIL import Image

from segpipe.handlers import ui_assets
from segpipe.settings import ApiSettings, load_settings
from segpipe_local.events import http_api_event
from segpipe_local.gateway import Gateway
from segpipe_local.lambda_context import LocalLambdaContext
from tests.helpers.handlers import ENVIRONMENT

UI = ui_assets.UI_DIR


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The API handler module, with settings as on AWS in eu-west-1 (no custom endpoint).

    A module first imported here under the fake environment would keep that environment's settings
    for the rest of the process (the integration tests import the same module), so it is dropped
    again afterwards."""
    name = "segpipe.handlers.handle_api_request"
    imported_here = name not in sys.modules
    for key, value in ENVIRONMENT.items():
        monkeypatch.setenv(key, value)
    module = importlib.import_module(name)
    environ = {**ENVIRONMENT, "DATA_BUCKET": "lab-data", "AWS_REGION": "eu-west-1"}
    monkeypatch.setattr(module, "settings", load_settings(ApiSettings, environ))
    yield module
    if imported_here:
        sys.modules.pop(name, None)


def get(api: ModuleType, path: str) -> dict[str, Any]:
    answer: dict[str, Any] = api.lambda_handler(
        http_api_event("GET", path), LocalLambdaContext("ApiFunction")
    )
    return answer


def csp_directives(policy: str) -> dict[str, list[str]]:
    directives = {}
    for part in policy.split(";"):
        name, *sources = part.split()
        directives[name] = sources
    return directives


# --- binary and text assets ----------------------------------------------------------------------


def test_a_png_asset_is_served_as_base64_bytes(api: ModuleType) -> None:
    # Given the page's touch icon, a real PNG file
    expected = (UI / "touch-icon.png").read_bytes()

    # When it is asked for
    answer = get(api, "/ui/touch-icon.png")

    # Then API Gateway gets the exact bytes, base64-encoded and flagged so, as an image/png
    assert answer["statusCode"] == 200
    assert answer["isBase64Encoded"] is True
    assert answer["headers"]["Content-Type"] == "image/png"
    body = base64.b64decode(answer["body"], validate=True)
    assert body == expected
    with Image.open(io.BytesIO(body)) as image:
        assert (image.format, image.size) == ("PNG", (180, 180))


def test_the_local_gateway_answers_the_png_bytes(api: ModuleType) -> None:
    # Given the local HTTP gateway in front of the real API handler
    class Api:
        def invoke(self, event: dict[str, Any]) -> Any:
            return api.lambda_handler(event, LocalLambdaContext("ApiFunction"))

    gateway = Gateway(Api())  # type: ignore[arg-type]  # the gateway only calls invoke()

    # When a browser asks it for the PNG
    from werkzeug.test import EnvironBuilder

    response = gateway.handle(EnvironBuilder(path="/ui/touch-icon.png").get_request())

    # Then the browser gets the file's bytes
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/png"
    assert response.get_data() == (UI / "touch-icon.png").read_bytes()


@pytest.mark.parametrize(
    ("name", "content_type"),
    [("app.js", "text/javascript; charset=utf-8"), ("app.css", "text/css; charset=utf-8")],
)
def test_text_assets_are_served_as_text(api: ModuleType, name: str, content_type: str) -> None:
    answer = get(api, f"/ui/{name}")

    assert answer["statusCode"] == 200
    assert answer["isBase64Encoded"] is False
    assert answer["headers"]["Content-Type"] == content_type
    assert answer["body"] == (UI / name).read_text(encoding="utf-8")


def test_the_page_itself_is_served_at_ui(api: ModuleType) -> None:
    answer = get(api, "/ui/")

    assert answer["statusCode"] == 200
    assert answer["body"].startswith("<!doctype html>")
    assert 'href="touch-icon.png"' in answer["body"]


def test_a_missing_asset_is_a_404_with_its_code(api: ModuleType) -> None:
    answer = get(api, "/ui/nothing-here.png")

    assert answer["statusCode"] == 404
    assert '"asset_not_found"' in answer["body"]


# --- the Content-Security-Policy -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "app.js", "touch-icon.png"])
def test_images_may_come_only_from_the_page_and_the_bucket(api: ModuleType, name: str) -> None:
    # Given the API on AWS in eu-west-1 with the bucket lab-data
    # When any page asset is served
    policy = csp_directives(get(api, f"/ui/{name}")["headers"]["Content-Security-Policy"])

    # Then images come from the page, data:/blob: URLs and the bucket's regional host only
    assert policy["img-src"] == ["'self'", "data:", "blob:", "https://lab-data.s3.eu-west-1.amazonaws.com"]
    # and the page cannot be re-based, post forms elsewhere, be framed or load outside code
    assert policy["base-uri"] == ["'none'"]
    assert policy["form-action"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    for directive in ("default-src", "script-src", "style-src", "connect-src"):
        assert policy[directive] == ["'self'"], directive


def test_on_the_local_stack_images_come_from_its_s3_endpoint(
    api: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the API configured with the local stack's moto server as its AWS endpoint
    environ = {**ENVIRONMENT, "AWS_ENDPOINT_URL": "http://127.0.0.1:8001", "AWS_REGION": "us-east-1"}
    monkeypatch.setattr(api, "settings", load_settings(ApiSettings, environ))

    # When the page is served
    policy = csp_directives(get(api, "/ui/")["headers"]["Content-Security-Policy"])

    # Then its images may come from that endpoint, and from no other host
    assert policy["img-src"] == ["'self'", "data:", "blob:", "http://127.0.0.1:8001"]


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1", "ap-southeast-2"])
def test_the_preview_origin_on_aws_is_the_buckets_regional_virtual_host(region: str) -> None:
    assert ui_assets.preview_origin("lab-data", region, None) == f"https://lab-data.s3.{region}.amazonaws.com"


@pytest.mark.parametrize(
    ("endpoint", "origin"),
    [
        ("http://127.0.0.1:8001", "http://127.0.0.1:8001"),
        ("http://localhost:4566/", "http://localhost:4566"),
        ("https://S3.Example.org/some/path?x=1", "https://s3.example.org"),
        ("http://user:secret@127.0.0.1:9000", "http://127.0.0.1:9000"),
        ("http://[::1]:8001", "http://[::1]:8001"),
    ],
)
def test_the_preview_origin_with_a_custom_endpoint_is_its_origin(endpoint: str, origin: str) -> None:
    assert ui_assets.preview_origin("lab-data", "us-east-1", endpoint) == origin


@pytest.mark.parametrize(
    "endpoint", ["127.0.0.1:8001", "ftp://files.example.org", "http://a b:1", "http://x;y"]
)
def test_an_endpoint_without_an_http_origin_is_refused(endpoint: str) -> None:
    with pytest.raises(ValueError, match="origin"):
        ui_assets.preview_origin("lab-data", "us-east-1", endpoint)


def test_a_source_that_would_add_directives_is_refused() -> None:
    with pytest.raises(ValueError, match="not an origin"):
        ui_assets.content_security_policy("https://x.example.org; script-src *")


@pytest.mark.parametrize(
    ("extra", "origin"),
    [
        ({"AWS_REGION": "eu-west-1"}, "https://b.s3.eu-west-1.amazonaws.com"),
        ({"AWS_DEFAULT_REGION": "eu-central-1"}, "https://b.s3.eu-central-1.amazonaws.com"),
        ({"AWS_ENDPOINT_URL": "http://127.0.0.1:8001"}, "http://127.0.0.1:8001"),
        (
            {"AWS_ENDPOINT_URL": "http://127.0.0.1:8001", "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9000"},
            "http://127.0.0.1:9000",
        ),
        ({"AWS_ENDPOINT_URL": ""}, "https://b.s3.us-east-1.amazonaws.com"),
    ],
)
def test_the_api_settings_give_the_preview_origin(extra: dict[str, str], origin: str) -> None:
    # Given the function's environment (the S3-specific endpoint wins, as in the AWS SDKs)
    environ = {key: value for key, value in ENVIRONMENT.items() if key != "AWS_DEFAULT_REGION"}

    # When the settings are read at cold start
    settings = load_settings(ApiSettings, {**environ, **extra})

    # Then they name the origin the presigned previews will have
    assert ui_assets.image_origin(settings) == origin


# --- the page's modules ship and are served ------------------------------------------------------

IMPORT = re.compile(
    r"""^\s*(?:import|export)\b[^'"]*?\bfrom\s+["']([^"']+)["']|^\s*import\s+["']([^"']+)["']""", re.M
)


def test_every_module_the_page_imports_is_a_flat_asset_the_route_serves() -> None:
    # Given the entry module that index.html loads
    html = (UI / "index.html").read_text()
    assert '<script type="module" src="app.js"></script>' in html
    seen: set[str] = set()
    todo = ["app.js"]

    # When its static imports are followed
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for match in IMPORT.finditer((UI / name).read_text()):
            target = match.group(1) or match.group(2)
            assert target.startswith("./") and "/" not in target[2:], (name, target)
            todo.append(target[2:])

    # Then each is a file in ui/ whose name the asset route accepts (the SAM build copies ui/*)
    for name in seen:
        assert (UI / name).is_file(), name
        assert re.match(ui_assets.ASSET_PATTERN, name), name
    assert {"api.js", "dom.js", "router.js", "review.js", "viewer.js", "statistics.js", "plot.js"} <= seen


def test_every_module_is_type_checked() -> None:
    for module in UI.glob("*.js"):
        assert module.read_text().startswith("// @ts-check\n"), module.name


def test_an_image_source_with_a_trailing_newline_cannot_reach_the_header() -> None:
    # `$` in a Python pattern also matches before a final newline: the check is a full match
    with pytest.raises(ValueError):
        ui_assets.content_security_policy("http://127.0.0.1:8001\n")
