"""What each preset is, in one table that validation, the estimate and the trainer all read.

The trainer builds the encoder with `patch_size` and trains at `learning_rate` unless a training sets
its own (DINOv2's 14 px patch embedding is resampled to
16 px so that the DPT decoder's strides line up), validation warns about objects narrower than half
a patch, the estimate divides the training pixels by `megapixels_per_second`, and a training that
does not say whether to average each tile's eight flips and turns takes `test_time_flips`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from pydantic import ConfigDict, Field

from segpipe.models.common import Preset
from segpipe.models.contract import Contract

#: timm's benchmark: ViT-B/16 trains at 97 img/s at 384x384 on an RTX 3090 (AMP).
VIT_B16_MEGAPIXELS_PER_SECOND = 97 * 384 * 384 / 1e6
#: Share of the encoder-only benchmark speed left once the DPT decoder and losses are added.
DECODER_FACTOR = 0.7


class PresetFacts(Contract):
    """One preset's facts."""

    model_config = ConfigDict(frozen=True)

    patch_size: int = Field(description="ViT patch edge in image pixels, as the trainer builds the encoder")
    hub_weights: bool = Field(description="Whether pretrained encoder weights exist on the model hub")
    megapixels_per_second: float = Field(
        description="Training throughput on the reference GPU (RTX 3090-class, mixed precision)"
    )
    derivation: str = Field(description="How the throughput figure was derived")
    learning_rate: float = Field(
        default=3e-4,
        gt=0,
        description="Peak learning rate of the decoder and heads when a training sets none",
    )
    test_time_flips: bool = Field(
        default=False,
        description="Whether a training that does not say predicts each tile in its eight flips and "
        "quarter turns and averages them (8x the inference work; the threshold is tuned on the same)",
    )


PRESETS: Mapping[Preset, PresetFacts] = MappingProxyType(
    {
        Preset.TINY: PresetFacts(
            patch_size=16,
            hub_weights=False,
            megapixels_per_second=100.0,
            derivation="test preset: bound by data loading, about 100 Mpx/s",
            # 1e-3 and 2e-3 were tried on real nuclei and did not hold up (segpipe_trainer.model.tiny).
            learning_rate=3e-4,
            # Chosen by cross-validation on the real nuclei's training tiles (segpipe_trainer.model.tiny).
            test_time_flips=True,
        ),
        Preset.DINOV2_SMALL: PresetFacts(
            patch_size=16,
            hub_weights=True,
            # ViT-S needs about a third of ViT-B's FLOPs per token; at patch 16 the token counts match.
            megapixels_per_second=VIT_B16_MEGAPIXELS_PER_SECOND * 3.0 * DECODER_FACTOR,
            derivation="ViT-S/16: 3x ViT-B/16 per token at the same token count, x 0.7 for the decoder",
        ),
        Preset.SAM_VIT_BASE: PresetFacts(
            patch_size=16,
            hub_weights=True,
            megapixels_per_second=VIT_B16_MEGAPIXELS_PER_SECOND * DECODER_FACTOR,
            derivation="ViT-B/16 (timm: 97 img/s at 384² on an RTX 3090) x 0.7 for the decoder",
        ),
    }
)
