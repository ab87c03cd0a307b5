"""The model review page: static files shipped inside the function package, served by the API
itself so the page works the same on the local stack and on AWS."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from aws_lambda_powertools.event_handler import Response

from segpipe.errors import NotFoundError

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


class AssetNotFound(NotFoundError):
    code = "asset_not_found"


@cache
def _read(name: str) -> str:
    path = UI_DIR / name
    if not path.is_file() or path.parent != UI_DIR:
        raise AssetNotFound(f"No page asset {name!r}.")
    return path.read_text(encoding="utf-8")


def response(name: str) -> Response[Any]:
    body = _read(name)
    headers = {
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": (
            "default-src 'self'; img-src 'self' data: blob: http: https:; style-src 'self'; "
            "script-src 'self'; connect-src 'self'; frame-ancestors 'none'"
        ),
    }
    return Response(
        status_code=200, content_type=CONTENT_TYPES[Path(name).suffix], body=body, headers=headers
    )
