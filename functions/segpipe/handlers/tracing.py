"""Powertools' Tracer, built when the first event is handled instead of when a handler is imported.

Building a `Tracer` imports the X-Ray SDK, and the SDK imports botocore: about 180 ms of each
handler's cold import, spent before the function could answer anything. Built on the first event,
it costs that event little more than what it pays anyway (its first AWS client imports botocore).

On AWS (the template's `Tracing: Active`) tracing is what it was: the handler's `## lambda_handler`
subsegment with its `ColdStart` and `Service` annotations, the response or error as metadata, and a
subsegment for every AWS call, since botocore is patched before the handler makes its first client.
Only botocore is patched (X-Ray's documented `patch(('botocore',))`): `patch_all` also patched
httplib, sqlite3 and requests, which the handlers never use; the SDK's httplib patch ignores
botocore's own connections, so it added no subsegment for an AWS call either.
Locally and in the tests `POWERTOOLS_TRACE_DISABLED` turns it off, as before.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

#: The libraries whose calls X-Ray records: every AWS call goes through botocore.
TRACED_MODULES = ("botocore",)

R = TypeVar("R")


class LazyTracer:
    """`capture_lambda_handler` as Powertools' Tracer gives it, the Tracer built on first use."""

    def __init__(self, service: str) -> None:
        self._service = service
        self._tracer: Tracer | None = None
        self._lock = threading.Lock()  # the local stack may deliver two first events at once

    @property
    def tracer(self) -> Tracer:
        """The Powertools Tracer (built, and botocore patched, on the first call)."""
        with self._lock:
            if self._tracer is None:
                from aws_lambda_powertools import Tracer

                self._tracer = Tracer(service=self._service, patch_modules=TRACED_MODULES)
            return self._tracer

    @property
    def built(self) -> bool:
        return self._tracer is not None

    def capture_lambda_handler(self, handler: Callable[[Any, Any], R]) -> Callable[[Any, Any], R]:
        traced: list[Callable[[Any, Any], R]] = []

        @functools.wraps(handler)
        def run(event: Any, context: Any) -> R:
            if not traced:
                traced.append(self.tracer.capture_lambda_handler(handler))
            return traced[0](event, context)

        return run
