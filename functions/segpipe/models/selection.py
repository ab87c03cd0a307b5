"""Which training images the trainer holds out to choose on, and when it refits: one rule, two readers.

The trainer holds whole groups of training images out (a group is an image's `group`, else its
file name) to choose the epoch count and the thresholds on; with few held-out groups it then
trains a fresh model on every training image (the refit) for as many epochs as the first phase
ran: the configured count, or fewer when early stopping ended it (`segpipe_trainer.job.
refit_epochs`: a few held-out images score too unsteadily for their single best epoch to be a
good count). The
validation report's estimate counts that second training. Both read the rule here, so the
estimate cannot drift from what the trainer does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Literal

from segpipe.models.coco import CocoImage

#: Share of the training groups held out for the choices, unless a training says otherwise.
VALIDATION_FRACTION = 0.1
#: With fewer held-out validation groups than this, the final model is refit on every training
#: image (few groups hold out a large share of a small dataset).
REFIT_BELOW_GROUPS = 8

SelectionMethod = Literal["holdout", "refit", "none"]


def holdout_group(image: CocoImage) -> str:
    """The unit held out whole: the image's `group` (tiles of one slide), else the image itself."""
    return image.group or image.file_name


def stable_fraction(key: str) -> float:
    """A number in [0, 1) fixed by `key` alone (SHA-256), the same on every machine and run."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def validation_groups(groups: Iterable[str], *, fraction: float) -> set[str]:
    """The groups held out: those whose stable hash falls under `fraction`.

    With two or more groups and a positive fraction, at least one group is held out (the lowest
    hash) and at least one is kept (the highest); otherwise none is held out.
    """
    if fraction <= 0:
        return set()
    draws = {group: stable_fraction(f"validation:{group}") for group in set(groups)}
    if len(draws) < 2:
        return set()
    held = {group for group, draw in draws.items() if draw < fraction}
    if not held:
        held = {min(draws, key=lambda group: (draws[group], group))}
    if len(held) == len(draws):
        held.discard(max(draws, key=lambda group: (draws[group], group)))
    return held


def selection_method(held_out_groups: int) -> SelectionMethod:
    """How the final model is chosen when `held_out_groups` groups are held out."""
    if held_out_groups == 0:
        return "none"
    return "refit" if held_out_groups < REFIT_BELOW_GROUPS else "holdout"
