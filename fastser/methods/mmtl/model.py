"""The MMTL networks (Cai et al., "Meta Multi-task Learning for Speech Emotion Recognition").

The meta learner is the CNN-LSTM of the paper's Table 1 over log-power spectrogram segments
of at most 3 s, (S, frames, bins) = (S, 300, 200) by default (time x frequency):

    Conv 12x16, 16 channels, ReLU, maxpool 2x2   -> (S, 16, 150, 100)
    Conv 8x12,  24 channels, ReLU, maxpool 2x2   -> (S, 24, 75, 50)
    Conv 5x7,   32 channels, ReLU, maxpool 2x2   -> (S, 32, 37, 25)
    BiLSTM 128 over the 37 time steps (32 x 25 = 800 features per step); the final states of
    both directions, or the mean of its outputs over time (``summary="mean"``, the authors'
    code)                                        -> (S, 256)
    FC_1 64, ReLU                                -> (S, 64)   the representation
    FC_2 4                                       -> (S, 4)    one classifier shared by the
                                                              discretised affect tasks
                                                              (valence, arousal, dominance)

Kernels are (time x frequency) with 'same' zero padding (PyTorch's convention for even sizes: the
extra row/column of padding goes after). The transfer learner is one FC layer (FC_3) to the emotion
classes, reading FC_2's 4 affect logits as in Table 1 (``transfer_input="affect_logits"``) or the
64-d representation (``"representation"``, fastser 0.1). The baselines' networks, built from the
same :class:`CNNLSTMEncoder`, are in :mod:`fastser.methods.mmtl.baselines`.

The LSTM is :class:`BiLSTM`, an explicit cell unrolled over time with batched matmuls, so
``torch.func.vmap`` can run it over stacked per-speaker parameters; it holds the parameters of
``nn.LSTM(bidirectional=True, batch_first=True)`` under the same names and computes the same
function. Every network is TorchScript-scriptable; segment logits become utterance posteriors
in :class:`SegmentPosteriorMean` (the export module of MMTL and its baselines).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: (time kernel, frequency kernel, output channels) of the paper's three conv layers.
TABLE1_CONV: tuple[tuple[int, int, int], ...] = ((12, 16, 16), (8, 12, 24), (5, 7, 32))
#: A smaller stack for the 4x4-pooled (75 x 50) input: the recipes' default (and the demo's).
SMALL_CONV: tuple[tuple[int, int, int], ...] = ((5, 5, 16), (3, 3, 24), (3, 3, 32))
#: What FC_1 reads of the BiLSTM: its final states (both directions) or its mean output.
LSTM_SUMMARIES = ("final", "mean")
#: What the transfer learner reads: FC_2's affect logits (Table 1) or FC_1's representation.
TRANSFER_INPUTS = ("affect_logits", "representation")
#: Classes of each discretised affect task (see :func:`fastser.methods.mmtl.meta.discretise_affect`).
AFFECT_CLASSES = 4


class BiLSTM(nn.Module):
    """One-layer bidirectional LSTM, (B, T, D) -> (output (B, T, 2H), h_n (2, B, H)), equal to
    ``nn.LSTM(D, H, bidirectional=True, batch_first=True)`` with the same state dict (gates
    i, f, g, o; zero initial states). Written as an explicit cell so vmap supports it."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size = int(input_size), int(hidden_size)
        gates = 4 * self.hidden_size
        for suffix in ("", "_reverse"):
            self.register_parameter(f"weight_ih_l0{suffix}",
                                    nn.Parameter(torch.empty(gates, self.input_size)))
            self.register_parameter(f"weight_hh_l0{suffix}",
                                    nn.Parameter(torch.empty(gates, self.hidden_size)))
            self.register_parameter(f"bias_ih_l0{suffix}", nn.Parameter(torch.empty(gates)))
            self.register_parameter(f"bias_hh_l0{suffix}", nn.Parameter(torch.empty(gates)))
        bound = 1.0 / math.sqrt(self.hidden_size)  # nn.LSTM's initialisation
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        batch, steps = x.shape[0], x.shape[1]
        w_ih = torch.stack([self.weight_ih_l0, self.weight_ih_l0_reverse])  # (2, 4H, D)
        w_hh_t = torch.stack([self.weight_hh_l0, self.weight_hh_l0_reverse]).transpose(1, 2)
        bias = torch.stack([self.bias_ih_l0 + self.bias_hh_l0,
                            self.bias_ih_l0_reverse + self.bias_hh_l0_reverse])  # (2, 4H)
        # direction 1 reads time backwards: both directions step through index t together
        both = torch.stack([x, x.flip(1)]).flatten(1, 2)  # (2, B*T, D)
        gates_x = torch.baddbmm(bias.unsqueeze(1), both, w_ih.transpose(1, 2))
        gates_x = gates_x.unflatten(1, (batch, steps))  # (2, B, T, 4H)
        h = x.new_zeros(2, batch, self.hidden_size)
        c = x.new_zeros(2, batch, self.hidden_size)
        outputs: list[Tensor] = []
        # unbind once: indexing step t inside the loop would make each step's backward
        # materialise (and zero) a gradient of the whole gates_x, quadratic in T
        for gates_t in gates_x.unbind(2):
            gates = gates_t + torch.bmm(h, w_hh_t)  # (2, B, 4H)
            i, f, g, o = gates.chunk(4, dim=2)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outputs.append(h)
        states = torch.stack(outputs, dim=2)  # (2, B, T, H)
        output = torch.cat([states[0], states[1].flip(1)], dim=2)
        return output, h


def _same_padding(kernel: int) -> tuple[int, int]:
    """'same' zero padding (before, after) of a kernel size, the extra one after."""
    before = (kernel - 1) // 2
    return before, kernel - 1 - before


def conv_block(x: Tensor, weight: Tensor, bias: Optional[Tensor], groups: int = 1) -> Tensor:
    """Conv (kt x kf from ``weight``, 'same' zero padding), ReLU, 2x2 max pool:
    (S, C_in, T, F) -> (S, C_out, T // 2, F // 2). ReLU after the pooling: the same function
    and gradient (ReLU is monotone, so it commutes with max), on a quarter of the elements."""
    time_pad = _same_padding(weight.shape[-2])
    freq_pad = _same_padding(weight.shape[-1])
    padded = F.pad(x, [freq_pad[0], freq_pad[1], time_pad[0], time_pad[1]])
    return torch.relu(F.max_pool2d(F.conv2d(padded, weight, bias, groups=groups), 2))


class ConvBlock(nn.Module):
    """:func:`conv_block` with its own weights: (S, C_in, T, F) -> (S, C_out, T // 2, F // 2)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, int]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel)

    def forward(self, x: Tensor) -> Tensor:
        return conv_block(x, self.conv.weight, self.conv.bias)


class CNNLSTMEncoder(nn.Module):
    """Table 1 up to the representation: segments (S, frames, bins) -> (S, embed_dim).
    ``summary``: what FC_1 reads of the BiLSTM, "final" (the final states of both directions)
    or "mean" (its outputs averaged over time)."""

    def __init__(self, frames: int = 300, bins: int = 200,
                 conv: Sequence[Sequence[int]] = TABLE1_CONV, lstm_hidden: int = 128,
                 embed_dim: int = 64, summary: str = "final") -> None:
        super().__init__()
        if len(conv) < 1:
            raise ValueError("CNNLSTMEncoder: needs at least one conv layer")
        if summary not in LSTM_SUMMARIES:
            raise ValueError(f"CNNLSTMEncoder: summary must be one of {LSTM_SUMMARIES}, got "
                             f"{summary!r}")
        self.summary = summary
        self.frames, self.bins = int(frames), int(bins)
        steps, features, channels = self.frames, self.bins, 1
        blocks = []
        for layer in conv:
            if len(layer) != 3 or min(layer) < 1:
                raise ValueError(f"CNNLSTMEncoder: each conv layer is (time kernel, frequency "
                                 f"kernel, channels) >= 1, got {tuple(layer)}")
            kt, kf, out = (int(v) for v in layer)
            blocks.append(ConvBlock(channels, out, (kt, kf)))
            steps, features, channels = steps // 2, features // 2, out
        if steps < 1 or features < 1:
            raise ValueError(f"CNNLSTMEncoder: input {frames}x{bins} is too small for "
                             f"{len(conv)} 2x2 poolings")
        self.convs = nn.Sequential(*blocks)
        self.steps = steps
        self.lstm = BiLSTM(channels * features, lstm_hidden)
        self.fc = nn.Linear(2 * lstm_hidden, embed_dim)
        self.embed_dim = int(embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3 or x.shape[1] != self.frames or x.shape[2] != self.bins:
            raise ValueError("CNNLSTMEncoder: segments must be (S, {}, {}), got {}".format(
                self.frames, self.bins, list(x.shape)))
        maps = self.convs(x.unsqueeze(1))  # (S, C, T', F')
        sequence = maps.permute(0, 2, 1, 3).flatten(2)  # (S, T', C * F')
        outputs, last = self.lstm(sequence)  # (S, T', 2H), (2, S, H)
        if self.summary == "mean":
            summary = outputs.mean(dim=1)
        else:
            summary = torch.cat([last[0], last[1]], dim=1)
        return torch.relu(self.fc(summary))


class MetaLearner(nn.Module):
    """The meta learner: encoder + one 4-way classifier shared by the three affect tasks.
    ``forward``: (S, frames, bins) -> auxiliary logits (S, 4); ``embed``: -> (S, 64)."""

    def __init__(self, encoder: CNNLSTMEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.embed_dim, AFFECT_CLASSES)

    @torch.jit.export
    def embed(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(x))


class MMTLNet(nn.Module):
    """Meta learner + transfer learner (FC_3 -> emotion classes) over FC_2's affect logits
    (``transfer_input="affect_logits"``, Table 1) or FC_1's representation
    (``"representation"``). (S, frames, bins) -> emotion logits (S, C). Parameters: ``meta.*``
    (theta) and ``transfer.*`` (phi)."""

    def __init__(self, num_classes: int, transfer_input: str = "representation",
                 **encoder_config) -> None:
        super().__init__()
        if transfer_input not in TRANSFER_INPUTS:
            raise ValueError(f"MMTLNet: transfer_input must be one of {TRANSFER_INPUTS}, got "
                             f"{transfer_input!r}")
        self.meta = MetaLearner(CNNLSTMEncoder(**encoder_config))
        self.reads_affect_logits = transfer_input == "affect_logits"
        width = AFFECT_CLASSES if self.reads_affect_logits else self.meta.encoder.embed_dim
        self.transfer = nn.Linear(width, num_classes)

    def transfer_features(self, x: Tensor) -> Tensor:
        """What the transfer learner reads: (S, frames, bins) -> (S, 4) or (S, embed_dim)."""
        return self.meta(x) if self.reads_affect_logits else self.meta.embed(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.transfer(self.transfer_features(x))

    @torch.jit.export
    def embed(self, x: Tensor) -> Tensor:
        """The representation the transfer learner reads (S, embed_dim)."""
        return self.meta.embed(x)


def utterance_posteriors(segment_probs: Tensor, counts: Tensor) -> Tensor:
    """Mean of each utterance's segment posteriors: (S, C), counts (B,) summing to S ->
    (B, C)."""
    # owner[s]: the utterance of segment s (no data-dependent shape: exports to ONNX)
    positions = torch.arange(segment_probs.shape[0], device=counts.device)
    owner = torch.bucketize(positions, counts.cumsum(0), right=True)
    total = segment_probs.new_zeros(counts.shape[0], segment_probs.shape[1])
    total = total.index_add(0, owner, segment_probs)
    return total / counts.to(segment_probs.dtype).unsqueeze(1)


class SegmentPosteriorMean(nn.Module):
    """Export module: packed segments (S, frames, bins) and counts (B,) int64 (each >= 1,
    summing to S) -> utterance class probabilities (B, C), the mean of the segments' softmax
    posteriors under ``net`` (:class:`MMTLNet` or a baseline network)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    @torch.jit.export
    def segment_probs(self, segments: Tensor) -> Tensor:
        """The segments' softmax posteriors (S, C) (streaming recognition)."""
        return torch.softmax(self.net(segments), dim=1)

    def forward(self, segments: Tensor, counts: Tensor) -> Tensor:
        if counts.dim() != 1 or counts.dtype != torch.long:
            raise ValueError("SegmentPosteriorMean: counts must be int64 (B,), got {} {}".format(
                counts.dtype, list(counts.shape)))
        # the value checks run eagerly and in TorchScript; torch.export traces past them (a
        # graph cannot branch on the values of its inputs)
        if torch.jit.is_scripting() or not torch.compiler.is_compiling():
            if counts.shape[0] > 0 and int(counts.min()) < 1:
                raise ValueError("SegmentPosteriorMean: every utterance needs at least one segment")
            if int(counts.sum()) != segments.shape[0]:
                raise ValueError("SegmentPosteriorMean: counts sum to {}, but there are {} "
                                 "segments".format(int(counts.sum()), segments.shape[0]))
        return utterance_posteriors(self.segment_probs(segments), counts)
