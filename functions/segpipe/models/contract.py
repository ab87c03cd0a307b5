"""The base of segpipe's contracts."""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict


class Contract(BaseModel):
    """A pydantic model whose validator is built when it is first used, not when its module is
    imported (`defer_build`): a Lambda's cold start then pays only for the contracts its event
    touches, not for every model its imports define. Behaviour and JSON schemas are unchanged."""

    model_config = ConfigDict(defer_build=True)

    @classmethod
    def from_record(cls, record: object, **computed: Any) -> Self:
        """This contract filled from `record`'s attributes of the same names, with `computed` for the
        fields a view works out itself; every value is validated as usual."""
        copied = {
            name: getattr(record, name)
            for name in cls.model_fields
            if name not in computed and hasattr(record, name)
        }
        return cls.model_validate({**copied, **computed})
