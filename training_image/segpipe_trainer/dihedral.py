"""Test-time averaging over the square's eight symmetries (flips and quarter turns).

The model is trained on tiles flipped and turned at random (`data.Augmentation.flips`), so each of
the eight views of a tile is one it could have been trained on. `DihedralAverage` runs the model on
all eight, maps every output back to the tile's own frame and averages them: class logits and the
distance logit are scalars per pixel and only move; the flow head's two channels are a vector
(dy, dx) per pixel, whose components also turn with the view (a row flip negates dy, a column flip
negates dx, a transpose swaps them).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import torch
from torch import nn

from segpipe_trainer.model import split_outputs


@dataclass(frozen=True)
class View:
    """One symmetry: transpose first (optional), then flip rows and/or columns."""

    transpose: bool
    flip_rows: bool
    flip_cols: bool

    @property
    def flipped(self) -> list[int]:
        """The dimensions this view flips: rows (-2) and/or columns (-1)."""
        return [dim for dim, flip in ((-2, self.flip_rows), (-1, self.flip_cols)) if flip]

    def apply(self, tiles: torch.Tensor) -> torch.Tensor:
        """B x C x T x T tiles as this view sees them."""
        out = tiles.transpose(-2, -1) if self.transpose else tiles
        return out.flip(self.flipped) if self.flipped else out

    def undo(self, outputs: torch.Tensor, *, flow_channels: slice | None) -> torch.Tensor:
        """B x O x T x T outputs of the viewed tiles, back in the tiles' own frame."""
        out = outputs.flip(self.flipped) if self.flipped else outputs
        if flow_channels is not None:
            dy, dx = flow_channels.start, flow_channels.start + 1
            signs = out.new_ones(out.shape[1])
            signs[dy] = -1.0 if self.flip_rows else 1.0
            signs[dx] = -1.0 if self.flip_cols else 1.0
            out = out * signs[None, :, None, None]
            if self.transpose:
                order = list(range(out.shape[1]))
                order[dy], order[dx] = dx, dy
                out = out[:, order]
        return out.transpose(-2, -1) if self.transpose else out


#: The eight symmetries of the square, the identity first.
VIEWS: tuple[View, ...] = tuple(View(*flags) for flags in product((False, True), repeat=3))


class DihedralAverage(nn.Module):
    """`model`'s outputs averaged over the eight views of each (square) tile.

    `num_classes` locates the flow channels: the outputs after the K+1 class logits are a vector
    field when there are two of them (the flow head) and a scalar otherwise.
    """

    def __init__(self, model: nn.Module, *, num_classes: int) -> None:
        super().__init__()
        self.model = model
        self.num_classes = num_classes

    def forward(self, tiles: torch.Tensor) -> torch.Tensor:
        if tiles.shape[-1] != tiles.shape[-2]:
            raise ValueError(f"dihedral averaging needs square tiles, got {tuple(tiles.shape[-2:])}")
        total: torch.Tensor | None = None
        flow_channels: slice | None = None
        for view in VIEWS:
            outputs = self.model(view.apply(tiles))
            # bf16 under autocast: summed in float32 (float64 stays float64)
            outputs = outputs.to(torch.promote_types(outputs.dtype, torch.float32))
            if total is None:
                _, head = split_outputs(outputs, num_classes=self.num_classes)
                if head is not None and head.ndim == 4:
                    flow_channels = slice(self.num_classes + 1, self.num_classes + 3)
            back = view.undo(outputs, flow_channels=flow_channels)
            total = back if total is None else total + back
        assert total is not None
        return total / len(VIEWS)
