"""Local servers answer their own page only.

The signing proxy of `segpipe ui` signs what it forwards with the operator's AWS credentials, and
the local gateway serves local data without any credentials at all. Any web page the operator
visits can make the browser send requests to 127.0.0.1, so both refuse:

- a `Host` that is not their own loopback address and port (a page whose DNS name was rebound to
  127.0.0.1 would otherwise read the answers: to the browser it is the page's own origin);
- a state-changing request (anything but GET, HEAD, OPTIONS) that a browser marks as coming from
  another origin: an `Origin` that is not one of theirs, or a `Sec-Fetch-Site` other than
  `same-origin`. A form post or a `text/plain` fetch from another site carries both.

Browsers send `Origin` with every same-origin POST, PUT, PATCH and DELETE, so the review page
works unchanged; clients outside a browser (curl, the CLI, SDK scripts) send neither header and
are not affected.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.wrappers import Response

from segpipe.models.api import ErrorBody, ErrorDetail

logger = logging.getLogger(__name__)

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

HOST_NOT_ALLOWED = "host_not_allowed"
CROSS_ORIGIN_REQUEST = "cross_origin_request"

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _host_literal(host: str) -> str | None:
    """`host` as it appears in a Host header (IPv6 in brackets); None for a wildcard address."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host.lower()
    if address.is_unspecified:
        return None
    return f"[{address}]" if address.version == 6 else str(address)


def is_loopback(host: str) -> bool:
    """True for `localhost` and for loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class LocalOrigin:
    """The Host values and origins a local server on `port` answers."""

    def __init__(self, port: int, *, host: str = "127.0.0.1") -> None:
        names = list(LOOPBACK_NAMES)
        bound = _host_literal(host)
        if bound is not None and bound not in names:
            names.append(bound)  # its own address, when bound to one that is not loopback
        self.hosts = frozenset(f"{name}:{port}" for name in names) | (
            frozenset(names) if port == 80 else frozenset()
        )
        self.origins = frozenset(f"http://{value}" for value in self.hosts)

    def refusal(self, method: str, headers: Any) -> tuple[str, str, dict[str, str]] | None:
        """(code, message, context) when the request must be refused, None when it may pass."""
        host = (headers.get("Host") or "").strip().lower()
        if host not in self.hosts:
            return (
                HOST_NOT_ALLOWED,
                "This local server answers requests for its own loopback address only "
                f"(Host {sorted(self.hosts)[0]} or another loopback name with the same port).",
                {"host": host[:200]},
            )
        if method.upper() in SAFE_METHODS:
            return None
        origin = headers.get("Origin")
        site = headers.get("Sec-Fetch-Site")
        if (origin is not None and origin.lower() not in self.origins) or (
            site is not None and site.lower() != "same-origin"
        ):
            return (
                CROSS_ORIGIN_REQUEST,
                "A request that changes state must come from this server's own page (or from a "
                "client outside the browser); another site's page cannot send it.",
                {"origin": (origin or "")[:200], "sec_fetch_site": (site or "")[:50]},
            )
        return None


class LocalOnly:
    """WSGI middleware: requests `LocalOrigin.refusal` refuses get a 403 in the API's error body and
    never reach `app`."""

    def __init__(self, app: WsgiApp, origin: LocalOrigin) -> None:
        self.app = app
        self.origin = origin

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        headers = {
            "Host": environ.get("HTTP_HOST"),
            "Origin": environ.get("HTTP_ORIGIN"),
            "Sec-Fetch-Site": environ.get("HTTP_SEC_FETCH_SITE"),
        }
        refusal = self.origin.refusal(str(environ.get("REQUEST_METHOD", "GET")), headers)
        if refusal is None:
            return self.app(environ, start_response)
        code, message, context = refusal
        logger.warning(
            "refused %s %s: %s %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"), code, context
        )
        body = ErrorBody(error=ErrorDetail(code=code, message=message, context=context))
        response = Response(body.model_dump_json(), status=403, content_type="application/json")
        return response(environ, start_response)


def guard(server: Any, *, host: str) -> None:
    """Put `LocalOnly` in front of a werkzeug server's app, for the port it is bound to."""
    server.app = LocalOnly(server.app, LocalOrigin(int(server.server_port), host=host))
