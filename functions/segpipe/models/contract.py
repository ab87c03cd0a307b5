"""The base of segpipe's contracts."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Contract(BaseModel):
    """A pydantic model whose validator is built when it is first used, not when its module is
    imported (`defer_build`): a Lambda's cold start then pays only for the contracts its event
    touches, not for every model its imports define. Behaviour and JSON schemas are unchanged."""

    model_config = ConfigDict(defer_build=True)
