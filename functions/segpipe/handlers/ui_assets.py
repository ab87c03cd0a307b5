"""The model review page: static files shipped inside the function package, served by the API
itself so the page works the same on the local stack and on AWS.

Text assets go out as text; images (PNG, ICO) as their bytes, base64-encoded with
`isBase64Encoded` set, which API Gateway (and the local gateway) decode. Powertools would
base64-encode a `bytes` body itself, but only after the resolver's response validation
(`enable_validation=True`) has serialized the body in JSON mode, which decodes bytes as UTF-8 and
fails on a PNG; so the body is encoded here and the response marked. Every asset carries the page's
Content-Security-Policy: scripts, styles and API calls from the page's own origin only; images
from there, `data:`/`blob:` URLs and the data bucket's preview origin (the presigned preview URLs),
nowhere else.
"""

from __future__ import annotations

import base64
from functools import cache
from pathlib import Path
from typing import Any

from aws_lambda_powertools.event_handler import Response

from segpipe.errors import NotFoundError
from segpipe.models.endpoints import ORIGIN, preview_origin
from segpipe.settings import ApiSettings

UI_DIR = Path(__file__).resolve().parents[1] / "ui"
ASSET_PATTERN = r"^[A-Za-z0-9_-]+\.(html|js|css|svg|png|ico)$"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
BINARY_SUFFIXES = frozenset({".png", ".ico"})
#: What may stand in a CSP source expression for an origin (no spaces, semicolons or commas).


class AssetNotFound(NotFoundError):
    code = "asset_not_found"


@cache
def _read(name: str) -> str | bytes:
    path = UI_DIR / name
    if not path.is_file() or path.parent != UI_DIR:
        raise AssetNotFound(f"No page asset {name!r}.")
    data = path.read_bytes()
    return data if path.suffix in BINARY_SUFFIXES else data.decode("utf-8")


def image_origin(settings: ApiSettings) -> str:
    """The preview origin the API function's settings give (AWS_ENDPOINT_URL_S3 before
    AWS_ENDPOINT_URL, as the AWS SDKs read them)."""
    endpoint = settings.AWS_ENDPOINT_URL_S3 or settings.AWS_ENDPOINT_URL or None
    return preview_origin(settings.DATA_BUCKET, settings.AWS_REGION, endpoint)


def content_security_policy(image_source: str) -> str:
    if not ORIGIN.fullmatch(image_source):
        raise ValueError(f"{image_source!r} is not an origin.")
    return (
        f"default-src 'self'; img-src 'self' data: blob: {image_source}; style-src 'self'; "
        "script-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    )


def response(name: str, *, image_source: str) -> Response[Any]:
    """The asset `name`, with the page's headers; its images may come from `image_source`."""
    content = _read(name)
    headers = {
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": content_security_policy(image_source),
    }
    binary = isinstance(content, bytes)
    body = base64.b64encode(content).decode("ascii") if isinstance(content, bytes) else content
    answer: Response[Any] = Response(
        status_code=200, content_type=CONTENT_TYPES[Path(name).suffix], body=body, headers=headers
    )
    answer.base64_encoded = binary
    return answer
