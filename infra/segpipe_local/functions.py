"""The real Lambda handlers, invoked in-process one request at a time per function, as one
Lambda execution environment would run them."""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from segpipe_local.lambda_context import LocalLambdaContext

logger = logging.getLogger(__name__)
_invocation = threading.local()


class _RoutedStream(io.TextIOBase):
    """What a function prints while it runs (Powertools' JSON logs and metrics) goes to the
    functions' log file, as on Lambda it goes to CloudWatch; everything else to the console."""

    def __init__(self, console: TextIO, log: TextIO) -> None:
        self._console = console
        self._log = log

    def write(self, text: str) -> int:
        return (self._log if getattr(_invocation, "active", False) else self._console).write(text)

    def flush(self) -> None:
        self._console.flush()
        self._log.flush()

    def isatty(self) -> bool:
        return self._console.isatty()


@contextlib.contextmanager
def function_output_to(path: Path) -> Iterator[None]:
    """Route the output of function invocations to `path` while the stack runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as log:
        console_out, console_err = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _RoutedStream(console_out, log), _RoutedStream(console_err, log)
        try:
            yield
        finally:
            sys.stdout, sys.stderr = console_out, console_err


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
            _invocation.active = True
            try:
                handler = self._load()
                return handler(event, LocalLambdaContext(self.name, region=self._region))
            finally:
                _invocation.active = False


def functions_from_template(handlers: dict[str, str], *, region: str) -> dict[str, LocalFunction]:
    return {name: LocalFunction(name, handler, region=region) for name, handler in handlers.items()}
