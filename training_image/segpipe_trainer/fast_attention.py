"""SAM's windowed attention with decomposed relative-position bias, on PyTorch's fused SDPA kernels.

What timm's SAM ViT (`timm.models.vision_transformer_sam.Attention`) does per block: LayerNorm, a
window partition (pad to a multiple of 14 tokens, permute, copy), the qkv projection, then q, k, v
reshaped to 3-D `(B x heads) x N x hd`, the bias `rel_h + rel_w` materialised as a dense
`(B x heads) x N x N` tensor (its index built on the CPU and copied over on every call), and
`scaled_dot_product_attention(q, k, v, attn_mask=bias)`. PyTorch's fused CUDA kernels (flash,
memory-efficient, cuDNN) only take 4-D inputs (sdp_utils' `check_tensor_shapes`), so every SAM
block falls back to the math path: the N x N logits are written, soft-maxed and read back in full,
forward and backward. Flash attention in addition takes no mask at all.

`install_fast_attention` swaps each such module for `FastRelPosAttention` (same parameters, same
state-dict keys) that computes the same attention in one of two ways:

- "fold" (flash-eligible): the bias is folded into the dot product. With one-hot codes of each
  key's row and column, logit(i, j) = scale q_i . k_j + rel_h[i, row(j)] + rel_w[i, col(j)]
  = q'_i . k'_j for q' = [scale q, rel_h[i, :], rel_w[i, :]], k' = [k, onehot(row j), onehot(col j)],
  and v zero-padded to the same width. SDPA runs with scale 1 and no mask, so on CUDA it can take
  the flash kernel (head width hd + H + W padded to a multiple of 8, at most 256): 96 for SAM's
  14 x 14 windows, 128 for global attention on 32 x 32 tokens (512 px tiles), 192 at 1024 px.
  No N x N tensor exists in either pass.
- "mask" (memory-efficient / cuDNN kernels): a 4-D float bias, allocated with its last dimension
  padded to a multiple of 16 (the memory-efficient kernel's alignment; otherwise it copies the
  mask on every call). The bias and its gradient are N x N tensors, so this is the slower path;
  "auto" uses it only where the folded width would exceed flash's 256.

Blocks without relative positions get plain 4-D SDPA (flash-eligible). Dropout and q/k norms are
kept as timm has them. Numerics: the same algebra in another order (tests compare against timm's
module in fp32 and under bf16 autocast, forward and backward).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal, NamedTuple

import torch
from timm.models.vision_transformer_sam import Attention as TimmSamAttention
from torch import nn
from torch.nn import functional

logger = logging.getLogger(__name__)

#: How the relative-position bias reaches SDPA: folded into q/k (flash), a float mask, or chosen per call.
AttentionMode = Literal["auto", "fold", "mask"]

FLASH_MAX_HEAD_DIM = 256
MASK_ALIGNMENT = 16


def rel_pos_table(q_size: int, k_size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """Relative-position embeddings for every (query, key) offset along one axis: q x k x hd.

    The same values as timm's `get_rel_pos` (linear resampling when the table was trained for
    another size, then a gather), with the index built on `rel_pos`'s device.
    """
    max_dist = 2 * max(q_size, k_size) - 1
    table = rel_pos
    if table.shape[0] != max_dist:
        resized = functional.interpolate(
            table.reshape(1, table.shape[0], -1).permute(0, 2, 1), size=max_dist, mode="linear"
        )
        table = resized.reshape(-1, max_dist).permute(1, 0)
    q_coords = torch.arange(q_size, dtype=torch.float32, device=table.device)[:, None] * max(
        k_size / q_size, 1.0
    )
    k_coords = torch.arange(k_size, dtype=torch.float32, device=table.device)[None, :] * max(
        q_size / k_size, 1.0
    )
    relative = (q_coords - k_coords) + (k_size - 1) * max(q_size / k_size, 1.0)
    return table[relative.long()]


def folded_width(*, head_dim: int, height: int, width: int) -> int:
    """Head width of q', k', v' in the folded form: hd + H + W, rounded up to a multiple of 8."""
    return 8 * math.ceil((head_dim + height + width) / 8)


class RelBias(NamedTuple):
    """Each query's relative-position bias per key row, B x heads x N x H, and per key column,
    B x heads x N x W (SAM's decomposed `rel_h` and `rel_w`)."""

    h: torch.Tensor
    w: torch.Tensor


def _key_codes(height: int, width: int, *, like: torch.Tensor) -> torch.Tensor:
    """N x (H + W) one-hot codes of each key's row and column (N = H x W, keys in row-major order)."""
    rows = torch.arange(height, device=like.device).repeat_interleave(width)
    cols = torch.arange(width, device=like.device).repeat(height)
    codes = torch.cat(
        [functional.one_hot(rows, height), functional.one_hot(cols, width)], dim=1
    )  # N x (H + W)
    return codes.to(like.dtype)


class FastRelPosAttention(nn.Module):
    """timm SAM attention computed on fused SDPA kernels; takes over the parameters of `source`.

    forward: B x H x W x C tokens (a window or the whole grid) -> B x H x W x C.
    """

    def __init__(self, source: Any, *, mode: AttentionMode = "auto") -> None:  # a timm SAM Attention
        super().__init__()
        if getattr(source, "rope", None) is not None:
            raise ValueError("rotary position embeddings are not supported by FastRelPosAttention")
        self.num_heads: int = source.num_heads
        self.head_dim: int = source.head_dim
        self.scale: float = source.scale
        self.mode: AttentionMode = mode
        self.use_rel_pos: bool = bool(source.use_rel_pos)
        self.qkv = source.qkv
        self.q_norm = source.q_norm
        self.k_norm = source.k_norm
        self.attn_drop = source.attn_drop
        self.proj = source.proj
        self.proj_drop = source.proj_drop
        if self.use_rel_pos:
            self.rel_pos_h = source.rel_pos_h
            self.rel_pos_w = source.rel_pos_w

    def path(self, *, height: int, width: int) -> Literal["plain", "fold", "mask"]:
        """The form this module uses on an H x W token grid."""
        if not self.use_rel_pos:
            return "plain"
        if self.mode != "auto":
            return self.mode
        fits = folded_width(head_dim=self.head_dim, height=height, width=width) <= FLASH_MAX_HEAD_DIM
        return "fold" if fits else "mask"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width, _ = x.shape
        tokens = height * width
        qkv = self.qkv(x.reshape(batch, tokens, -1)).view(batch, tokens, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each B x heads x N x hd
        q, k = self.q_norm(q), self.k_norm(k)
        dropout = self.attn_drop.p if self.training else 0.0
        path = self.path(height=height, width=width)
        if path == "plain":
            out = functional.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        else:
            attend = self._folded if path == "fold" else self._masked
            out = attend(q, k, v, self._rel_bias(q, height=height, width=width), dropout=dropout)
        out = out.transpose(1, 2).reshape(batch, tokens, -1)
        out = self.proj_drop(self.proj(out))
        return out.view(batch, height, width, -1)

    def _rel_bias(self, q: torch.Tensor, *, height: int, width: int) -> RelBias:
        """Each query's bias per key row and per key column, from q (B x heads x N x hd)."""
        batch, heads, tokens, dim = q.shape
        grid = q.reshape(batch, heads, height, width, dim)
        table_h = rel_pos_table(height, height, self.rel_pos_h)
        table_w = rel_pos_table(width, width, self.rel_pos_w)
        rel_h = torch.einsum("bnhwc,hkc->bnhwk", grid, table_h).reshape(batch, heads, tokens, height)
        rel_w = torch.einsum("bnhwc,wkc->bnhwk", grid, table_w).reshape(batch, heads, tokens, width)
        return RelBias(h=rel_h, w=rel_w)

    def _folded(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: RelBias, *, dropout: float
    ) -> torch.Tensor:
        batch, heads, tokens, dim = q.shape
        height, width = bias.h.shape[-1], bias.w.shape[-1]
        wide = folded_width(head_dim=dim, height=height, width=width)
        pad = wide - (dim + height + width)
        codes = _key_codes(height, width, like=k).expand(batch, heads, tokens, height + width)
        q_wide = torch.cat([q * self.scale, bias.h.to(q.dtype), bias.w.to(q.dtype)], dim=-1)
        k_wide = torch.cat([k, codes], dim=-1)
        if pad:
            q_wide = functional.pad(q_wide, (0, pad))
            k_wide = functional.pad(k_wide, (0, pad))
        v_wide = functional.pad(v, (0, wide - dim))
        out = functional.scaled_dot_product_attention(q_wide, k_wide, v_wide, dropout_p=dropout, scale=1.0)
        return out[..., :dim]

    def _masked(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: RelBias, *, dropout: float
    ) -> torch.Tensor:
        batch, heads, tokens, _ = q.shape
        aligned = MASK_ALIGNMENT * math.ceil(tokens / MASK_ALIGNMENT)
        mask = (bias.h[..., :, None] + bias.w[..., None, :]).reshape(batch, heads, tokens, tokens).to(q.dtype)
        if aligned != tokens:  # a row stride the kernel accepts as it is, instead of its own copy per call
            mask = functional.pad(mask, (0, aligned - tokens))[..., :tokens]
        return functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)


def install_fast_attention(vit: nn.Module, *, mode: AttentionMode = "auto") -> int:
    """Replace every timm SAM attention module under `vit` by `FastRelPosAttention`; the count replaced.

    Parameters move over unchanged (same objects, same state-dict keys), so weights load before or
    after. Modules with rotary embeddings are left as they are.
    """
    replaced = 0
    for parent in list(vit.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, TimmSamAttention) and getattr(child, "rope", None) is None:
                setattr(parent, name, FastRelPosAttention(child, mode=mode))
                replaced += 1
    if replaced:
        logger.info("Attention of %d SAM blocks runs on fused SDPA kernels (mode %s)", replaced, mode)
    return replaced
