"""Delivers events that matched the template's EventBridge rules (queued in SQS by moto's
EventBridge) to the real handlers, with retries as Lambda's asynchronous invocation has them."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from segpipe_local.aws import EventQueue
from segpipe_local.events import ACCOUNT
from segpipe_local.functions import LocalFunction

logger = logging.getLogger(__name__)

#: Lambda retries a failed asynchronous invocation twice.
MAX_ATTEMPTS = 3


class Dispatcher:
    def __init__(
        self,
        sqs: Any,
        queues: list[EventQueue],
        functions: dict[str, LocalFunction],
        *,
        on_delivered: Callable[[], None] | None = None,
    ) -> None:
        self._sqs = sqs
        self._queues = queues
        self._functions = functions
        self._on_delivered = on_delivered
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._drain, args=(queue,), name=f"dispatch-{queue.rule}", daemon=True)
            for queue in queues
        ]
        self.delivered = 0
        self.failed = 0

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=25)

    def _drain(self, queue: EventQueue) -> None:
        function = self._functions[queue.function]
        while not self._stop.is_set():
            try:
                answer = self._sqs.receive_message(
                    QueueUrl=queue.queue_url,
                    MaxNumberOfMessages=10,
                    WaitTimeSeconds=1,
                    AttributeNames=["All"],
                )
            except Exception:  # the moto server is going away
                if self._stop.wait(0.5):
                    return
                continue
            for message in answer.get("Messages", []):
                self._deliver(function, queue, message)

    def _deliver(self, function: LocalFunction, queue: EventQueue, message: dict[str, Any]) -> None:
        event = json.loads(message["Body"])
        event.setdefault("account", ACCOUNT)  # events sent with put_events arrive without it
        attempts = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        try:
            function.invoke(event)
        except Exception:
            logger.exception("%s failed on event %s (attempt %d)", function.name, event.get("id"), attempts)
            if attempts < MAX_ATTEMPTS:
                self._sqs.change_message_visibility(
                    QueueUrl=queue.queue_url,
                    ReceiptHandle=message["ReceiptHandle"],
                    VisibilityTimeout=2 * attempts,
                )
                return
            self.failed += 1  # dropped, as Lambda would send it to the dead-letter queue
        else:
            self.delivered += 1
        self._sqs.delete_message(QueueUrl=queue.queue_url, ReceiptHandle=message["ReceiptHandle"])
        if self._on_delivered:
            self._on_delivered()
