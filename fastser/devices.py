"""Devices named by the user (``--device``, ``device=``): parsed and checked to be present
before any work, so that a typo or a missing GPU is one clear error, not a torch traceback
deep in a run."""

from __future__ import annotations

import torch

from fastser.errors import SettingsError

#: What ``--device`` accepts, for messages.
ACCEPTED = "auto, cpu, cuda or cuda:N"


def resolve_device(name: str | torch.device, local_rank: int = 0, *,
                   option: str = "device") -> torch.device:
    """The device ``name`` names ("auto": the local GPU when there is one, else the CPU; "cuda"
    without an index: GPU ``local_rank`` modulo the GPU count). SettingsError naming
    ``option`` for a name torch does not parse, a device type other than cpu/cuda, a CUDA
    device on a machine without one ("no CUDA device") or a GPU index out of range."""
    if isinstance(name, torch.device):
        device = name
    else:
        if not isinstance(name, str) or not name.strip():
            raise SettingsError(f"{option}: expected {ACCEPTED}, got {name!r}")
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            device = torch.device(name)
        except (RuntimeError, ValueError):
            raise SettingsError(f"{option}: expected {ACCEPTED}, got {name!r}") from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type != "cuda":
        raise SettingsError(f"{option}: expected {ACCEPTED}, got {str(device)!r} (fastser "
                            "runs on CPUs and CUDA GPUs)")
    if not torch.cuda.is_available():
        raise SettingsError(f"{option}: {str(device)!r} needs a GPU, but there is no CUDA device "
                            "on this machine (torch.cuda.is_available() is False); use cpu")
    count = torch.cuda.device_count()
    if device.index is None:
        return torch.device("cuda", local_rank % count)
    if device.index >= count:
        raise SettingsError(f"{option}: there is no CUDA device {device.index}; this machine has "
                            f"{count} (cuda:0 to cuda:{count - 1})")
    return device
