"""GLRF (Ding et al., "Stable Speech Emotion Recognition with Head-k-Pooling Loss"): a
segment scorer built from global-local representation-aware (GLRA) blocks.

A segment is the MFCC of a fixed 2 s window, (T, n_mfcc) = (198, 40) by default.  The model
standardises it with the training set's per-coefficient mean and std (buffers), runs a
Conv1d(k=3) + BN + ReLU stem, then ``blocks`` GLRA blocks, each halving T, then averages over
time and scores every class one-vs-rest:

    GLRF(features (S, T, n_mfcc)) -> logits (S, C);  GLRF.embed -> the time mean (S, channels)

A GLRA block on hidden states x (S, D, T) (channels first):

- global branch  G = x + MHSA(LayerNorm(x)) over the T frames (``heads`` heads);
- local branch   L = x + W · ReLU(BN(conv(ReLU(BN(conv(x)))))) with temporal convolutions of
  width ``local_kernel`` and a linear (pointwise) layer W;
- SK fusion      s = mean_t (G + L) (S, D); z = ReLU(FC(s)) (S, D / reduction);
                 (a_G, a_L) = softmax over the two branches of FC_G(z), FC_L(z), per channel;
                 out = a_G · G + a_L · L;
- halving        max pooling over time with kernel and stride 2 (T -> T // 2).

The segment scorer after the time average is one FC layer (``scorer="linear"``, Sec. 2.1) or
a 2-layer MLP (``"mlp"``, fastser's). Table 4's ablations: ``fusion="sum"`` (out = G + L) and
``branches="convolutions"`` (the two branches replaced by x + ReLU(BN(conv(x))) with temporal
kernels 3 and 5, fused as before); the third, cross-entropy instead of head-k-pooling, is the
loss with k = 1 (every segment selected: Eq. 2 becomes the one-vs-rest cross entropy of all
segments).

An utterance's class scores are the mean of its segments' sigmoid scores
(:func:`utterance_scores`); the head-k-pooling loss that trains the logits lives in the recipe
(fastser.train.recipes.glrf), which switches between the fused op and its reference.
Everything here is TorchScript-scriptable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastser.nn.guards import assert_range, assert_sum, tracing


class GlobalBranch(nn.Module):
    """x + MHSA(LayerNorm(x)): (S, D, T) -> (S, D, T), self-attention over the T frames."""

    def __init__(self, channels: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if channels % heads != 0:
            raise ValueError(f"GLRF: channels ({channels}) must be a multiple of heads ({heads})")
        self.heads = heads
        self.norm = nn.LayerNorm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.out = nn.Linear(channels, channels)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        segments, channels, frames = x.shape
        h = x.transpose(1, 2)  # (S, T, D)
        qkv = self.qkv(self.norm(h)).view(segments, frames, 3, self.heads,
                                          channels // self.heads).permute(2, 0, 3, 1, 4)
        # no dropout on the attention weights: SDPA's fused (flash) CPU/GPU kernels need none
        y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        y = self.out(y.transpose(1, 2).reshape(segments, frames, channels))
        return (h + self.dropout(y)).transpose(1, 2)


class LocalBranch(nn.Module):
    """x + W·ReLU(BN(conv(ReLU(BN(conv(x)))))): (S, D, T) -> (S, D, T), temporal
    convolutions of width ``kernel`` ('same' padding) and a pointwise linear layer W."""

    def __init__(self, channels: int, kernel: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"GLRF: local_kernel must be odd and positive, got {kernel}")
        pad = kernel // 2
        self.body = nn.Sequential(
            nn.Conv1d(channels, channels, kernel, padding=pad, bias=False),
            nn.BatchNorm1d(channels), nn.ReLU(),
            nn.Conv1d(channels, channels, kernel, padding=pad, bias=False),
            nn.BatchNorm1d(channels), nn.ReLU(),
            nn.Conv1d(channels, channels, 1),  # the linear layer, applied per frame
            nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class SKFusion(nn.Module):
    """Selective-kernel fusion of two branches (S, D, T): per-channel softmax weights over
    the branches from the time average of their sum, through a compact FC layer."""

    def __init__(self, channels: int, reduction: int = 4, min_hidden: int = 16) -> None:
        super().__init__()
        if reduction < 1:
            raise ValueError(f"GLRF: reduction must be >= 1, got {reduction}")
        hidden = max(channels // reduction, min(min_hidden, channels))
        self.squeeze = nn.Linear(channels, hidden)
        self.excite = nn.Linear(hidden, 2 * channels)

    def weights(self, g: Tensor, l: Tensor) -> Tensor:
        """(S, 2, D) branch weights (global, local), summing to 1 over the branches."""
        z = F.relu(self.squeeze((g + l).mean(dim=2)))
        return self.excite(z).view(g.shape[0], 2, g.shape[1]).softmax(dim=1)

    def forward(self, g: Tensor, l: Tensor) -> Tensor:
        w = self.weights(g, l).unsqueeze(3)  # (S, 2, D, 1)
        return w[:, 0] * g + w[:, 1] * l


class SumFusion(nn.Module):
    """Table 4's "wo/ Fusion Block": the two branches (S, D, T) summed."""

    def forward(self, g: Tensor, l: Tensor) -> Tensor:
        return g + l


class ConvBranch(nn.Module):
    """Table 4's "wo/ Global-Local" branch: x + ReLU(BN(conv(x))), a temporal convolution of
    width ``kernel`` ('same' padding): (S, D, T) -> (S, D, T)."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv1d(channels, channels, kernel, padding=kernel // 2,
                                            bias=False),
                                  nn.BatchNorm1d(channels), nn.ReLU())

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


#: Table 4's ablation choices and the segment scorer (module docstring).
FUSIONS = ("sk", "sum")
BRANCHES = ("global_local", "convolutions")
SCORERS = ("mlp", "linear")


class GLRABlock(nn.Module):
    """Global and local branches (or two convolution branches), SK fusion (or their sum),
    then halving: (S, D, T) -> (S, D, T // 2)."""

    def __init__(self, channels: int, heads: int, *, local_kernel: int = 3,
                 reduction: int = 4, dropout: float = 0.0, fusion: str = "sk",
                 branches: str = "global_local") -> None:
        super().__init__()
        if fusion not in FUSIONS or branches not in BRANCHES:
            raise ValueError(f"GLRF: fusion must be one of {FUSIONS} and branches one of "
                             f"{BRANCHES}, got {fusion!r} and {branches!r}")
        if branches == "global_local":
            self.global_branch: nn.Module = GlobalBranch(channels, heads, dropout)
            self.local_branch: nn.Module = LocalBranch(channels, local_kernel, dropout)
        else:
            self.global_branch, self.local_branch = ConvBranch(channels, 3), ConvBranch(channels, 5)
        self.fusion = SKFusion(channels, reduction) if fusion == "sk" else SumFusion()

    def forward(self, x: Tensor) -> Tensor:
        fused = self.fusion(self.global_branch(x), self.local_branch(x))
        return F.max_pool1d(fused, kernel_size=2, stride=2)


class GLRF(nn.Module):
    """Segment scorer: features (S, T, n_mfcc) -> one-vs-rest logits (S, C).

    T must be at least 2**blocks (each block halves it).  ``feature_mean`` / ``feature_std``
    (n_mfcc,) standardise the input; the recipe fills them from the training set."""

    def __init__(self, num_classes: int, *, n_mfcc: int = 40, channels: int = 128,
                 blocks: int = 3, heads: int = 4, local_kernel: int = 3, reduction: int = 4,
                 dropout: float = 0.1, scorer: str = "mlp", fusion: str = "sk",
                 branches: str = "global_local") -> None:
        super().__init__()
        if num_classes < 1 or n_mfcc < 1 or channels < 1 or blocks < 1 or heads < 1:
            raise ValueError(f"GLRF: num_classes, n_mfcc, channels, blocks and heads must be "
                             f"positive, got {num_classes}, {n_mfcc}, {channels}, {blocks}, "
                             f"{heads}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"GLRF: dropout must be in [0, 1), got {dropout}")
        if scorer not in SCORERS:
            raise ValueError(f"GLRF: scorer must be one of {SCORERS}, got {scorer!r}")
        self.num_classes, self.n_mfcc = num_classes, n_mfcc
        self.min_frames = 2 ** blocks  # each block halves T
        self.register_buffer("feature_mean", torch.zeros(n_mfcc))
        self.register_buffer("feature_std", torch.ones(n_mfcc))
        self.stem = nn.Sequential(nn.Conv1d(n_mfcc, channels, 3, padding=1, bias=False),
                                  nn.BatchNorm1d(channels), nn.ReLU())
        self.blocks = nn.ModuleList([
            GLRABlock(channels, heads, local_kernel=local_kernel, reduction=reduction,
                      dropout=dropout, fusion=fusion, branches=branches)
            for _ in range(blocks)])
        if scorer == "linear":
            self.scorer = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels, num_classes))
        else:
            self.scorer = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels, channels),
                                        nn.ReLU(), nn.Dropout(dropout),
                                        nn.Linear(channels, num_classes))

    def forward(self, features: Tensor) -> Tensor:
        return self.scorer(self.embed(features))

    def embed(self, features: Tensor) -> Tensor:
        """The segments' pooled representations (S, channels): the time mean of the last
        block's output, which the scorer reads."""
        if features.dim() != 3 or features.shape[2] != self.n_mfcc:
            raise ValueError("GLRF: features must be (S, T, n_mfcc) with n_mfcc = "
                             + str(self.n_mfcc) + ", got shape " + str(list(features.shape)))
        if features.shape[1] < self.min_frames:
            raise ValueError("GLRF: segments need at least " + str(self.min_frames)
                             + " frames (2**blocks), got " + str(features.shape[1]))
        x = ((features - self.feature_mean) / self.feature_std).transpose(1, 2)  # (S, n_mfcc, T)
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return x.mean(dim=2)


def _check_counts(counts: Tensor, segments: int) -> None:
    if int(counts.min()) < 1:
        raise ValueError("every utterance needs at least one segment (counts >= 1)")
    if int(counts.sum()) != segments:
        raise ValueError("counts sum to " + str(int(counts.sum())) + " but there are "
                         + str(segments) + " segments")


def utterance_scores(segment_scores: Tensor, counts: Tensor) -> Tensor:
    """Mean of each utterance's segment scores: (S, C) packed utterance after utterance, int64
    counts (B,) summing to S, each >= 1 -> (B, C)."""
    if counts.dim() != 1 or counts.dtype != torch.long:
        raise ValueError("counts must be an int64 (B,) tensor, got " + str(counts.dtype) + " "
                         + str(list(counts.shape)))
    if segment_scores.dim() != 2:
        raise ValueError("segment scores must be (S, C), got shape "
                         + str(list(segment_scores.shape)))
    if counts.numel() == 0:
        raise ValueError("every utterance needs at least one segment (counts >= 1)")
    if tracing():  # torch.compile / torch.export: _check_counts as graph asserts
        assert_range(counts, 1, segment_scores.shape[0],
                     "every utterance needs at least one segment (counts >= 1)")
        assert_sum(counts, segment_scores.shape[0], "counts must sum to the number of segments")
    else:
        _check_counts(counts, segment_scores.shape[0])
    # owner[s]: the utterance of segment s (no data-dependent shape, so torch.export traces it)
    positions = torch.arange(segment_scores.shape[0], device=counts.device)
    owner = torch.bucketize(positions, counts.cumsum(0), right=True)
    total = segment_scores.new_zeros(counts.shape[0], segment_scores.shape[1])
    total.index_add_(0, owner, segment_scores)
    return total / counts.unsqueeze(1).to(segment_scores.dtype)


class GLRFInference(nn.Module):
    """Inference module of a trained GLRF: segments (S, T, n_mfcc) and counts (B,) ->
    utterance class scores (B, C), the mean of the segments' sigmoid scores.  Its method
    :meth:`segment_probs` gives the per-segment scores (S, C) (streaming recognition)."""

    def __init__(self, model: GLRF) -> None:
        super().__init__()
        self.model = model

    @torch.jit.export
    def segment_probs(self, segments: Tensor) -> Tensor:
        return torch.sigmoid(self.model(segments))

    def forward(self, segments: Tensor, counts: Tensor) -> Tensor:
        return utterance_scores(self.segment_probs(segments), counts)
