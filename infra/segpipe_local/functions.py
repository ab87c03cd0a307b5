"""The real Lambda handlers, invoked in-process one request at a time per function, as one
Lambda execution environment would run them."""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from typing import Any

from segpipe_local.lambda_context import LocalLambdaContext

logger = logging.getLogger(__name__)


class LocalFunction:
    def __init__(self, name: str, handler: str, *, region: str = "us-east-1") -> None:
        self.name = name
        self.handler_path = handler
        self._region = region
        self._lock = threading.Lock()
        self._handler: Callable[[dict[str, Any], Any], Any] | None = None

    def _load(self) -> Callable[[dict[str, Any], Any], Any]:
        if self._handler is None:
            module_name, attribute = self.handler_path.rsplit(".", 1)
            self._handler = getattr(importlib.import_module(module_name), attribute)
        return self._handler

    def invoke(self, event: dict[str, Any]) -> Any:
        """Run the handler on one event; exceptions propagate as a failed invocation would."""
        with self._lock:
            handler = self._load()
            return handler(event, LocalLambdaContext(self.name, region=self._region))


def functions_from_template(handlers: dict[str, str], *, region: str) -> dict[str, LocalFunction]:
    return {name: LocalFunction(name, handler, region=region) for name, handler in handlers.items()}
