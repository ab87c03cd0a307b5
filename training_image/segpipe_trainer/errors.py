"""The one exception type whose message is written, as is, to `/opt/ml/output/failure`."""

from __future__ import annotations


class TrainerError(Exception):
    """A failure a person can act on; its message is one plain sentence naming the cause."""


def failure_sentence(error: BaseException, *, limit: int = 1000) -> str:
    """One line for `output/failure` (SageMaker shows at most about 1 KB of it as FailureReason).

    A `TrainerError` speaks for itself; anything else is named by its type, since its message
    was written for programmers.
    """
    if isinstance(error, TrainerError):
        text = str(error)
    else:
        detail = str(error).strip() or "no message"
        text = f"Training failed with an unexpected {type(error).__name__}: {detail}"
    text = " ".join(text.split())
    if not text.endswith("."):
        text += "."
    return text if len(text) <= limit else text[: limit - 3] + "..."
