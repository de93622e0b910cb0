"""The bidirectional LSTM every CAN encoder uses: one batched call over a ragged batch."""

from __future__ import annotations

from typing import List

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

METHODS = ("auto", "packed", "reversed")


def reverse_index(lengths: Tensor, steps: int) -> Tensor:
    """int64 (N, steps): position t of sequence n reads step lengths[n] - 1 - t for t <
    lengths[n] (each sequence reversed within its length), and step t past it."""
    positions = torch.arange(steps, device=lengths.device)[None, :]
    mirrored = lengths[:, None] - 1 - positions
    return torch.where(mirrored >= 0, mirrored, positions)


class PackedBLSTM(nn.Module):
    """Bidirectional LSTM (one ``nn.LSTM``) over padded sequences.

    forward(x (N, T, input_size), lengths int64 (N,) in [1, T]) -> (N, T, 2 * hidden_size):
    each sequence sees only its own first lengths[n] steps (the result does not depend on
    padding), outputs at or past a length are 0, dropout is applied to the outputs.

    ``method`` picks how the N sequences run in one batched call (both give the same result):
    "packed": ``pack_padded_sequence`` and the bidirectional LSTM (cuDNN skips the padding);
    "reversed": the padded batch through the forward direction, and through the backward
    direction with each sequence reversed within its length (on the CPU, ATen's backward of
    a packed LSTM copies a full-size gradient at every time step; this runs the training step
    about 3x faster there); "auto" (default): "packed" on CUDA, "reversed" elsewhere.
    """

    def __init__(self, input_size: int, hidden_size: int, dropout: float = 0.0,
                 method: str = "auto") -> None:
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"PackedBLSTM: method must be one of {METHODS}, got {method!r}")
        self.method = method
        self.lstm = nn.LSTM(input_size, hidden_size, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)

    @property
    def output_size(self) -> int:
        return 2 * self.lstm.hidden_size

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        if not torch.jit.is_scripting():
            if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
                return self._float32(x, lengths)
        return self._run(x, lengths)

    @torch.jit.unused
    def _float32(self, x: Tensor, lengths: Tensor) -> Tensor:
        """The LSTM in float32 under CPU autocast: oneDNN's bf16 LSTM is slower than its
        float32 one (a paper-size CAN training step 5x slower)."""
        with torch.autocast("cpu", enabled=False):
            return self._run(x.float(), lengths)

    def _run(self, x: Tensor, lengths: Tensor) -> Tensor:
        packed = self.method == "packed" or (self.method == "auto" and x.is_cuda)
        out = self._packed(x, lengths) if packed else self._reversed(x, lengths)
        return self.dropout(out)

    def _packed(self, x: Tensor, lengths: Tensor) -> Tensor:
        sequences = pack_padded_sequence(x, lengths.cpu(), batch_first=True,
                                         enforce_sorted=False)
        out, _ = self.lstm(sequences)
        return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]

    def _direction(self, x: Tensor, params: List[Tensor]) -> Tensor:
        hidden = self.lstm.hidden_size
        state = x.new_zeros(1, x.shape[0], hidden)
        return torch.lstm(x, [state, state], params, True, 1, 0.0, self.training, False,
                          True)[0]

    def _reversed(self, x: Tensor, lengths: Tensor) -> Tensor:
        lstm = self.lstm
        forward = self._direction(x, [lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0,
                                      lstm.bias_hh_l0])
        index = reverse_index(lengths, x.shape[1]).unsqueeze(2)
        reversed_x = x.gather(1, index.expand(-1, -1, x.shape[2]))
        backward = self._direction(reversed_x, [lstm.weight_ih_l0_reverse,
                                                lstm.weight_hh_l0_reverse,
                                                lstm.bias_ih_l0_reverse,
                                                lstm.bias_hh_l0_reverse])
        backward = backward.gather(1, index.expand(-1, -1, backward.shape[2]))
        valid = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]
        return torch.cat([forward, backward], dim=2) * valid.unsqueeze(2).to(forward.dtype)
