"""An exponential moving average of the model's weights, kept beside the weights being trained.

Scores of one small held-out set jump from epoch to epoch while the weights still move quickly, so
the epoch chosen on them, and the weights of that epoch, are partly luck. The average follows the
trained weights with a half-life given in epochs and moves much less from one epoch to the next:
held-out images are scored with it, the best epoch's weights are its weights, and a finished
training ends with it in the model. Early in training the average forgets faster (its decay grows
as (1 + n) / (10 + n) over the first steps), so the random start does not linger in it.

Every floating-point entry of the model's state (parameters and float buffers) is averaged; other
entries are copied. With several processes each keeps its own average, the same on all of them
because their weights are.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

#: The decay's warm-up: over the first steps it is at most (1 + n) / (WARMUP_STEPS + n).
WARMUP_STEPS = 10


def decay_for(*, half_life_epochs: float, steps_per_epoch: int) -> float:
    """The per-step decay whose weight halves after `half_life_epochs` epochs of steps."""
    if half_life_epochs <= 0:
        return 0.0
    return math.pow(0.5, 1.0 / (half_life_epochs * max(1, steps_per_epoch)))


class WeightAverage:
    """The running average of `model`'s floating-point state; `update` after each optimiser step."""

    def __init__(self, model: nn.Module, *, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must lie in (0, 1), got {decay}")
        self.model = model  # the plain module (not a compiled or data-parallel wrapper of it)
        self.decay = decay
        self.updates = 0
        self.shadow = {key: value.detach().clone() for key, value in _state(model).items()}

    @classmethod
    def for_training(
        cls, model: nn.Module, *, half_life_epochs: float, steps_per_epoch: int
    ) -> WeightAverage | None:
        """The average a training keeps, or None when its half-life is 0 (raw weights)."""
        if half_life_epochs <= 0:
            return None
        return cls(model, decay=decay_for(half_life_epochs=half_life_epochs, steps_per_epoch=steps_per_epoch))

    def step_decay(self) -> float:
        """The decay the next update uses: the set one, or less while the average is young."""
        return min(self.decay, (1 + self.updates) / (WARMUP_STEPS + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        """Move the average towards the model's current weights (after an optimiser step)."""
        keep = self.step_decay()
        for key, value in _state(self.model).items():
            average = self.shadow[key]
            if average.is_floating_point():
                average.lerp_(value.detach().to(average.dtype), 1.0 - keep)
            else:
                average.copy_(value)
        self.updates += 1

    @torch.no_grad()
    def copy_to_model(self) -> None:
        """Put the average into the model's own tensors (in place: a compiled module still sees them)."""
        for key, value in _state(self.model).items():
            value.copy_(self.shadow[key])

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The model holds the average inside the block and its trained weights again after it."""
        trained = {key: value.detach().clone() for key, value in _state(self.model).items()}
        self.copy_to_model()
        try:
            yield
        finally:
            with torch.no_grad():
                for key, value in _state(self.model).items():
                    value.copy_(trained[key])

    def state_dict(self) -> dict[str, object]:
        return {"decay": self.decay, "updates": self.updates, "shadow": self.shadow}

    def load_state_dict(self, payload: dict[str, object]) -> None:
        """Restore a saved average (a checkpoint's); its tensors keep this average's devices."""
        updates, shadow = payload["updates"], payload["shadow"]
        assert isinstance(updates, int) and isinstance(shadow, dict)
        if set(shadow) != set(self.shadow):
            raise ValueError("the saved weight average belongs to another model")
        with torch.no_grad():
            for key, value in shadow.items():
                self.shadow[key].copy_(value)
        self.updates = updates


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The module's state entries, sharing storage with its parameters and buffers."""
    module = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    return dict(module.state_dict(keep_vars=False))
