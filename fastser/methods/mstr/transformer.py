"""Transformer encoders that classify utterances from frame features, and the vanilla
Transformer baseline of MSTR (Li et al.).

:class:`FrameTransformer` is the skeleton both MSTR (fastser.methods.mstr.model) and the
baseline share: an input projection of the frame features (B, T, input_dim) to the model
dimension, a stack of blocks (attention + residual + LayerNorm, then a feed-forward
network + residual + LayerNorm; post-norm, as in the original Transformer), a mean over each
utterance's valid frames and a 3-layer fully connected classifier.  The original
Transformer's sinusoidal positional encoding is added to the projected input with
``positional_encoding="sinusoidal"``; without it (``"none"``, fastser 0.1's default) full
attention sees no frame order, so on MFCCs the baseline is a permutation-invariant bag of
frames (SSL features carry their context; MSTR's windows and pooling see the order).

Ragged batches are padded features plus ``lengths`` (int64 (B,), in [1, T]; None: all T).
Frames at or past a length change nothing: they are zeroed on entry, are never attended to
(the fractal op ignores them, full attention masks them as keys) and are left out of the
pooling.  Every module here is TorchScript-scriptable.
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastser.nn.fractal_attention import IMPLEMENTATIONS
from fastser.nn.guards import assert_range, tracing


#: What is added to the projected input frames (module docstring).
POSITIONAL_ENCODINGS = ("none", "sinusoidal")


def sinusoidal_encoding(frames: int, dim: int, device: torch.device,
                        dtype: torch.dtype) -> Tensor:
    """The original Transformer's positional encoding (frames, dim): sin(t / 10000^(2i/dim)) in
    the even channels, cos in the odd ones."""
    position = torch.arange(frames, device=device, dtype=torch.float32)[:, None]
    even = torch.arange(0, dim, 2, device=device, dtype=torch.float32)
    angle = position * torch.exp(even * (-math.log(10000.0) / dim))  # (frames, ceil(dim / 2))
    encoding = torch.zeros(frames, dim, device=device, dtype=torch.float32)
    encoding[:, 0::2] = torch.sin(angle)
    encoding[:, 1::2] = torch.cos(angle[:, :dim // 2])
    return encoding.to(dtype)


def check_implementation(implementation: str, name: str) -> None:
    """ValueError naming ``name`` unless ``implementation`` is "fused" or "reference"."""
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"{name}: implementation must be one of {', '.join(IMPLEMENTATIONS)}, "
                         f"got {implementation!r}")


def check_features(features: Tensor, lengths: Optional[Tensor], input_dim: int,
                   name: str) -> Tensor:
    """Validate padded features (B, T, input_dim) and their lengths; returns the lengths
    (int64 (B,), all T when None).  ValueError naming the problem otherwise."""
    if not features.is_floating_point():
        raise ValueError(name + ": features must be a float tensor, got " + str(features.dtype))
    if features.dim() != 3:
        raise ValueError(name + ": features must be (B, T, input_dim), got shape "
                         + str(list(features.shape)))
    if features.shape[2] != input_dim:
        raise ValueError(name + ": features have " + str(features.shape[2])
                         + " channels per frame, the model expects input_dim=" + str(input_dim))
    batch, frames = features.shape[0], features.shape[1]
    if frames < 1:
        raise ValueError(name + ": features have no frames (T = 0)")
    if lengths is None:
        return torch.full((batch,), frames, dtype=torch.long, device=features.device)
    if lengths.dim() != 1 or lengths.shape[0] != batch:
        raise ValueError(name + ": lengths must be (" + str(batch) + ",), got shape "
                         + str(list(lengths.shape)))
    if lengths.dtype != torch.long:
        raise ValueError(name + ": lengths must be int64, got " + str(lengths.dtype))
    if lengths.device != features.device:
        raise ValueError(name + ": lengths on " + str(lengths.device) + ", features on "
                         + str(features.device))
    if batch > 0 and lengths.device.type != "meta":  # meta tensors (FLOP counts) hold no values
        if tracing():  # torch.compile / torch.export: the bounds as graph asserts
            assert_range(lengths, 1, frames, name + ": lengths must lie in [1, T]")
        else:
            _check_length_values(lengths, frames, name)
    return lengths


def _check_length_values(lengths: Tensor, frames: int, name: str) -> None:
    shortest, longest = int(lengths.min()), int(lengths.max())
    if shortest < 1 or longest > frames:
        raise ValueError(name + ": lengths must lie in [1, T=" + str(frames) + "], got "
                         + "values from " + str(shortest) + " to " + str(longest))


def valid_frames(lengths: Tensor, frames: int) -> Tensor:
    """bool (B, frames): True at frames before each length."""
    return torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]


def masked_mean(x: Tensor, lengths: Tensor) -> Tensor:
    """Mean of x (B, T, E) over each sequence's first lengths[b] frames -> (B, E)."""
    valid = valid_frames(lengths, x.shape[1])[:, :, None]
    total = torch.where(valid, x, torch.zeros_like(x)).sum(dim=1)
    return total / lengths[:, None].to(x.dtype)


class FeedForward(nn.Module):
    """Position-wise feed-forward network: (B, T, E) -> (B, T, E)."""

    def __init__(self, embed_dim: int, hidden_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(embed_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, embed_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.dropout(F.relu(self.fc1(x))))


class FullSelfAttention(nn.Module):
    """Multi-head softmax self-attention over all valid frames (the vanilla Transformer's).

    x: (B, T, embed_dim), lengths: int64 (B,) -> (B, T, embed_dim).  A fused QKV projection
    (named like :class:`fastser.nn.FractalAttention`'s, so their state dicts match),
    ``F.scaled_dot_product_attention`` with a key-padding mask, W_O.
    ``implementation="reference"`` writes the attention out as matmul, masked softmax, matmul
    (the eager baseline)."""

    def __init__(self, embed_dim: int, num_heads: int, bias: bool = True, *,
                 implementation: str = "fused") -> None:
        super().__init__()
        check_implementation(implementation, "FullSelfAttention")
        if num_heads < 1 or embed_dim % num_heads != 0:
            raise ValueError(f"FullSelfAttention: embed_dim ({embed_dim}) must be a positive "
                             f"multiple of num_heads ({num_heads})")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.implementation = implementation
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        B, T, _ = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, H, T, D)
        keep = valid_frames(lengths, T)[:, None, None, :]  # (B, 1, 1, T): keys to attend to
        if self.implementation == "reference":
            scores = torch.matmul(q, k.transpose(-1, -2)) * (self.head_dim ** -0.5)
            weights = torch.softmax(scores.masked_fill(~keep, float("-inf")), dim=-1)
            y = torch.matmul(weights, v)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, self.embed_dim))

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
                f"implementation={self.implementation}")


class EncoderBlock(nn.Module):
    """x = LN(x + attention(x)); x = LN(x + FFN(x)).  ``attention`` maps (B, T, E) and
    lengths (B,) to (B, T, E)."""

    def __init__(self, attention: nn.Module, embed_dim: int, ffn_dim: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.attention = attention
        self.norm1 = nn.LayerNorm(embed_dim)
        self.ffn = FeedForward(embed_dim, ffn_dim, dropout)
        self.norm2 = nn.LayerNorm(embed_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        x = self.norm1(x + self.dropout(self.attention(x, lengths)))
        return self.norm2(x + self.dropout(self.ffn(x)))


def classifier_head(embed_dim: int, hidden: Sequence[int], num_classes: int,
                    dropout: float) -> nn.Sequential:
    """The 3-layer fully connected classifier: E -> hidden[0] -> hidden[1] -> C (ReLU and
    dropout between layers)."""
    if len(hidden) != 2 or min(hidden) < 1:
        raise ValueError(f"classifier_hidden must be two positive sizes, got {list(hidden)}")
    return nn.Sequential(nn.Linear(embed_dim, hidden[0]), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(hidden[0], hidden[1]), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(hidden[1], num_classes))


class FrameTransformer(nn.Module):
    """features (B, T, input_dim), lengths int64 (B,) or None -> outputs (B, C + K): class
    logits (C = num_classes) then affect values (K = affect_dims, the regression head of
    dimensional emotion; 0 by default).

    Input projection to ``embed_dim`` (plus the positional encoding, if any), the blocks,
    masked mean pooling over valid frames, the 3-FC head.  Subclasses choose the blocks'
    attention."""

    def __init__(self, name: str, blocks: List[nn.Module], input_dim: int, embed_dim: int,
                 num_classes: int, classifier_hidden: Optional[Sequence[int]],
                 dropout: float, positional_encoding: str = "none", affect_dims: int = 0) -> None:
        super().__init__()
        if input_dim < 1 or num_classes == 1 or num_classes < 0 or affect_dims < 0 \
                or num_classes + affect_dims < 1:
            raise ValueError(f"{name}: need input_dim >= 1, num_classes 0 or >= 2 and at least "
                             f"one output, got input_dim={input_dim}, num_classes={num_classes}"
                             f", affect_dims={affect_dims}")
        if positional_encoding not in POSITIONAL_ENCODINGS:
            raise ValueError(f"{name}: positional_encoding must be one of "
                             f"{POSITIONAL_ENCODINGS}, got {positional_encoding!r}")
        self.sinusoidal = positional_encoding == "sinusoidal"
        self.name = name
        self.input_dim = input_dim
        self.embed_dim = embed_dim
        self.num_classes = num_classes
        self.affect_dims = affect_dims
        self.input_proj = nn.Linear(input_dim, embed_dim)
        self.blocks = nn.ModuleList(blocks)
        hidden = classifier_hidden or (max(embed_dim // 2, 1), max(embed_dim // 4, 1))
        self.classifier = classifier_head(embed_dim, hidden, num_classes + affect_dims, dropout)

    @torch.jit.export
    def encode(self, features: Tensor, lengths: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """The last block's frames (B, T, embed_dim) and the lengths (B,) (all T when None)."""
        lengths = check_features(features, lengths, self.input_dim, self.name)
        valid = valid_frames(lengths, features.shape[1])[:, :, None]
        x = self.input_proj(torch.where(valid, features, torch.zeros_like(features)))
        if self.sinusoidal:
            x = x + sinusoidal_encoding(x.shape[1], x.shape[2], x.device, x.dtype)
        for block in self.blocks:
            x = block(x, lengths)
        return x, lengths

    @torch.jit.export
    def embed(self, features: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        """The pooled utterance embedding (B, embed_dim)."""
        frames, lengths = self.encode(features, lengths)
        return masked_mean(frames, lengths)

    def forward(self, features: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        return self.classifier(self.embed(features, lengths))


class VanillaTransformer(FrameTransformer):
    """The vanilla-Transformer baseline of MSTR: the same sizes and skeleton with full softmax
    self-attention (``F.scaled_dot_product_attention`` with a key-padding mask).

    features (B, T, input_dim), lengths (B,) or None -> logits (B, num_classes) and the
    ``affect_dims`` affect values after them.
    ``implementation="reference"``: attention written as matmul, masked softmax, matmul."""

    def __init__(self, input_dim: int = 1024, num_classes: int = 4, *, embed_dim: int = 1024,
                 num_heads: int = 16, num_blocks: int = 4, ffn_dim: int = 2048,
                 dropout: float = 0.1, classifier_hidden: Optional[Sequence[int]] = None,
                 implementation: str = "fused", positional_encoding: str = "none",
                 affect_dims: int = 0) -> None:
        check_implementation(implementation, "VanillaTransformer")
        blocks: List[nn.Module] = [
            EncoderBlock(FullSelfAttention(embed_dim, num_heads,
                                           implementation=implementation),
                         embed_dim, ffn_dim, dropout)
            for _ in range(num_blocks)]
        super().__init__("VanillaTransformer", blocks, input_dim, embed_dim, num_classes,
                         classifier_hidden, dropout, positional_encoding, affect_dims)


class CombinedLayers(nn.Module):
    """A :class:`FrameTransformer` over SSL layer outputs (B, T, L, D): the learned weighted
    layer sum (``combine``, (B, T, L, D) -> (B, T, D)), then the model. lengths (B,) or None
    -> outputs (B, C + K) as the model's."""

    def __init__(self, combine: nn.Module, model: FrameTransformer) -> None:
        super().__init__()
        self.combine, self.model = combine, model
        self.num_classes, self.affect_dims = model.num_classes, model.affect_dims

    def forward(self, layers: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        return self.model(self.combine(layers), lengths)


class ClassProbabilities(nn.Module):
    """The inference module of a :class:`FrameTransformer` (or :class:`CombinedLayers`):
    features (B, T, input_dim) (or layers (B, T, L, D)) and lengths (B,) -> utterance class
    probabilities (B, C)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.num_classes = model.num_classes

    def forward(self, features: Tensor, lengths: Tensor) -> Tensor:
        return torch.softmax(self.model(features, lengths)[:, :self.num_classes], dim=1)
