"""Multi-head attention with fewer heads than its embedding dimension allows.

``nn.MultiheadAttention`` ties its heads to ``embed_dim`` (``num_heads * head_dim`` must equal
it), so removing heads needs another module: :class:`PrunedMultiheadAttention` keeps
``embed_dim`` at its inputs and output and holds only the kept heads' projections.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PrunedMultiheadAttention"]


class PrunedMultiheadAttention(nn.Module):
    """``nn.MultiheadAttention``'s forward contract over a subset of its heads.

    Computes what the original module computes with the removed heads' contribution taken
    out (their columns of ``out_proj`` zeroed), with the same arithmetic as its slow path:
    explicit softmax when ``need_weights``, ``F.scaled_dot_product_attention`` otherwise.
    Per-head outputs follow the kept heads: ``average_attn_weights=False`` returns
    ``num_heads`` (kept) weights per query, and a 3-D ``attn_mask`` is given, as for the
    original, with one slice per original head (``source_num_heads``), of which the kept ones
    are used.

    Not supported (:func:`~greenai.compress.prune_channels` leaves such layers alone):
    ``add_bias_kv``, ``add_zero_attn``.

    Args:
        embed_dim: the query's and the output's feature size (unchanged by pruning).
        kept_heads: indices of the original heads kept, in order.
        source_num_heads: the original module's ``num_heads``.
        head_dim: features per head.
        kdim, vdim: key's and value's feature sizes (default ``embed_dim``).
        bias: whether the projections have biases.
        dropout: dropout on the attention weights in training mode.
        batch_first: inputs and output are ``(batch, seq, feature)``.
    """

    kept_heads: torch.Tensor

    def __init__(
        self,
        embed_dim: int,
        kept_heads: Sequence[int],
        source_num_heads: int,
        head_dim: int,
        *,
        kdim: int | None = None,
        vdim: int | None = None,
        bias: bool = True,
        dropout: float = 0.0,
        batch_first: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not kept_heads:
            raise ValueError("kept_heads must name at least one head")
        inner = len(kept_heads) * head_dim
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self.num_heads = len(kept_heads)
        self.head_dim = head_dim
        self.source_num_heads = source_num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        factory = {"device": device, "dtype": dtype}
        self.q_proj = nn.Linear(embed_dim, inner, bias=bias, **factory)
        self.k_proj = nn.Linear(self.kdim, inner, bias=bias, **factory)
        self.v_proj = nn.Linear(self.vdim, inner, bias=bias, **factory)
        self.out_proj = nn.Linear(inner, embed_dim, bias=bias, **factory)
        self.register_buffer(
            "kept_heads", torch.tensor(list(kept_heads), dtype=torch.long, device=device)
        )

    @classmethod
    def from_attention(
        cls, attention: nn.MultiheadAttention, kept_heads: Sequence[int]
    ) -> PrunedMultiheadAttention:
        """The kept heads of ``attention``, copied (its weights are left as they are)."""
        if attention.bias_k is not None or attention.add_zero_attn:
            raise ValueError("add_bias_kv and add_zero_attn are not supported")
        e, h = attention.embed_dim, attention.num_heads
        hd = e // h
        if attention._qkv_same_embed_dim:
            assert attention.in_proj_weight is not None
            q_w, k_w, v_w = attention.in_proj_weight.chunk(3)
        else:
            assert attention.q_proj_weight is not None
            assert attention.k_proj_weight is not None
            assert attention.v_proj_weight is not None
            q_w, k_w, v_w = (
                attention.q_proj_weight,
                attention.k_proj_weight,
                attention.v_proj_weight,
            )
        bias = attention.in_proj_bias is not None
        ref = attention.out_proj.weight
        layer = cls(
            e,
            kept_heads,
            h,
            hd,
            kdim=attention.kdim,
            vdim=attention.vdim,
            bias=bias,
            dropout=attention.dropout,
            batch_first=attention.batch_first,
            device=ref.device,
            dtype=ref.dtype,
        )
        rows = torch.cat([torch.arange(i * hd, (i + 1) * hd) for i in kept_heads]).to(ref.device)
        biases = attention.in_proj_bias.chunk(3) if attention.in_proj_bias is not None else None
        with torch.no_grad():
            for i, (proj, w) in enumerate(
                ((layer.q_proj, q_w), (layer.k_proj, k_w), (layer.v_proj, v_w))
            ):
                proj.weight.copy_(w[rows])
                proj.weight.requires_grad_(w.requires_grad)
                if biases is not None and proj.bias is not None:
                    proj.bias.copy_(biases[i][rows])
                    proj.bias.requires_grad_(biases[i].requires_grad)
            layer.out_proj.weight.copy_(ref[:, rows])
            layer.out_proj.weight.requires_grad_(ref.requires_grad)
            if layer.out_proj.bias is not None and attention.out_proj.bias is not None:
                layer.out_proj.bias.copy_(attention.out_proj.bias)
                layer.out_proj.bias.requires_grad_(attention.out_proj.bias.requires_grad)
        layer.train(attention.training)
        return layer

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """As ``nn.MultiheadAttention.forward``; see the class for per-head weights."""
        batched = query.dim() == 3
        if batched and self.batch_first:
            query, key, value = (t.transpose(1, 0) for t in (query, key, value))
        if not batched:
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        tgt_len, bsz, _ = query.shape
        src_len = key.shape[0]
        heads, hd = self.num_heads, self.head_dim

        if is_causal and attn_mask is None:
            raise RuntimeError("Need attn_mask if specifying the is_causal hint.")
        kpm = _float_mask(key_padding_mask, query.dtype)
        causal = is_causal and kpm is None and not need_weights
        mask = None if causal else _float_mask(attn_mask, query.dtype)
        if mask is not None:
            if mask.dim() == 2:
                mask = mask.unsqueeze(0)
            else:  # one slice per original head: keep those of the kept heads
                mask = mask.view(bsz, self.source_num_heads, tgt_len, src_len)
                mask = mask[:, self.kept_heads].reshape(bsz * heads, tgt_len, src_len)
        if kpm is not None:
            kpm = kpm.view(bsz, 1, 1, src_len).expand(-1, heads, -1, -1)
            kpm = kpm.reshape(bsz * heads, 1, src_len)
            mask = kpm if mask is None else mask + kpm

        q = self.q_proj(query).view(tgt_len, bsz * heads, hd).transpose(0, 1)
        k = self.k_proj(key).view(src_len, bsz * heads, hd).transpose(0, 1)
        v = self.v_proj(value).view(src_len, bsz * heads, hd).transpose(0, 1)
        dropout_p = self.dropout if self.training else 0.0

        weights: torch.Tensor | None = None
        if need_weights:
            q_scaled = q * math.sqrt(1.0 / float(hd))
            if mask is not None:
                scores = torch.baddbmm(mask, q_scaled, k.transpose(-2, -1))
            else:
                scores = torch.bmm(q_scaled, k.transpose(-2, -1))
            weights = F.softmax(scores, dim=-1)
            if dropout_p > 0.0:
                weights = F.dropout(weights, p=dropout_p)
            out = torch.bmm(weights, v)
            out = out.transpose(0, 1).contiguous().view(tgt_len * bsz, heads * hd)
            weights = weights.view(bsz, heads, tgt_len, src_len)
            if average_attn_weights:
                weights = weights.mean(dim=1)
            if not batched:
                weights = weights.squeeze(0)
        else:
            if mask is not None:
                mask = (
                    mask.unsqueeze(0) if mask.size(0) == 1 else mask.view(bsz, heads, -1, src_len)
                )
            q4 = q.view(bsz, heads, tgt_len, hd)
            k4 = k.view(bsz, heads, src_len, hd)
            v4 = v.view(bsz, heads, src_len, hd)
            out = F.scaled_dot_product_attention(q4, k4, v4, mask, dropout_p, causal)
            out = out.permute(2, 0, 1, 3).contiguous().view(bsz * tgt_len, heads * hd)
        out = self.out_proj(out).view(tgt_len, bsz, self.embed_dim)
        if not batched:
            out = out.squeeze(1)
        elif self.batch_first:
            out = out.transpose(1, 0)
        return out, weights

    def extra_repr(self) -> str:
        return (
            f"embed_dim={self.embed_dim}, num_heads={self.num_heads} of "
            f"{self.source_num_heads}, head_dim={self.head_dim}, batch_first={self.batch_first}"
        )


def _float_mask(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """A boolean mask (True: not attended) as an additive float mask, as torch's MHA does."""
    if mask is None or mask.is_floating_point():
        return mask
    return torch.zeros_like(mask, dtype=dtype).masked_fill_(mask, float("-inf"))
