"""The trainer every method shares: mixed precision (bf16 on GPUs and bf16-capable CPUs),
gradient clipping, warm-up + cosine schedule, early stopping on a validation split, seeds,
progress bars, per-epoch JSON-lines metrics, atomic checkpoints and exact resumption,
DistributedDataParallel under torchrun."""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from fastser.checkpoint import load_checkpoint, save_checkpoint
from fastser.errors import SettingsError, TrainingDiverged, UserError
from fastser.train.distributed import DistContext, init_distributed, resolve_device
from fastser.train.evaluation import evaluate
from fastser.train.precision import AMP_MODES, autocast
from fastser.train.recipe import Recipe, TrainBatches, TrainStep, move_to
from fastser.train.rng import rng_state, set_rng_state
from fastser.train.sampler import GlobalBatchSampler
from fastser.train.schedule import warmup_cosine



@dataclass
class TrainConfig:
    """Optimisation settings (the method's own settings live in its recipe)."""

    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.1
    grad_clip: float | None = 5.0
    amp: str = "auto"
    compile: bool = False  # the model under torch.compile (dynamic shapes)
    seed: int = 0
    patience: int | None = None
    monitor: str = "ua"
    eval_batch_size: int = 32
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise SettingsError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise SettingsError(f"batch_size must be >= 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise SettingsError(f"lr must be a positive number, got {self.lr}")
        if not 0 <= self.warmup_fraction < 1:
            raise SettingsError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if self.amp not in AMP_MODES:
            raise SettingsError(f"amp must be one of {AMP_MODES}, got {self.amp!r}")
        if self.patience is not None and self.patience < 1:
            raise SettingsError(f"patience must be >= 1, got {self.patience}")


@dataclass
class FitResult:
    """What training produced: the per-epoch history, the best validation metrics (when there
    is a validation split) and the model holding the best (or last) weights."""

    history: list[dict[str, Any]]
    best: dict[str, Any] | None
    model: nn.Module
    seconds: float
    stopped_early: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Trains one recipe's model; writes ``metrics.jsonl``, ``last.pt`` and ``best.pt`` under
    ``out_dir`` (rank 0 only when distributed)."""

    def __init__(self, recipe: Recipe, config: TrainConfig, out_dir: str | os.PathLike,
                 *, dist: DistContext | None = None, run_info: dict[str, Any] | None = None
                 ) -> None:
        """``run_info``: plain values stored in every checkpoint (data source, split, ...)."""
        self.recipe, self.config = recipe, config
        self.run_info = dict(run_info or {})
        self.out_dir = Path(out_dir)
        self.device = resolve_device(config.device, int(os.environ.get("LOCAL_RANK", "0")))
        self.dist = dist or init_distributed(self.device)

    # -- paths ---------------------------------------------------------------------------------
    @property
    def last_path(self) -> Path:
        return self.out_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.out_dir / "best.pt"

    @property
    def metrics_path(self) -> Path:
        return self.out_dir / "metrics.jsonl"

    # -- training ------------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.config.amp, self.device)

    def _checkpoint_payload(self, model: nn.Module, optimizer, scheduler, scaler, epoch: int,
                            step: int, history: list, best: dict | None) -> dict[str, Any]:
        return {
            "recipe": self.recipe.name,
            "recipe_state": self.recipe.state(),
            "model": _unwrap(model).state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "epoch": epoch,
            "step": step,
            "rng": rng_state(),
            "history": history,
            "best": best,
            "train_config": asdict(self.config),
            "run": self.run_info,
        }

    def fit(self, train_items: Sequence[Any], val_items: Sequence[Any] | None = None, *,
            resume: bool = False) -> FitResult:
        """Train for ``config.epochs`` epochs (fewer with early stopping).  ``resume=True``
        continues from ``out_dir/last.pt`` and ends where an uninterrupted run would."""
        cfg, recipe, dist = self.config, self.recipe, self.dist
        if len(train_items) == 0:
            raise UserError("fit: the training split is empty")
        seed_everything(cfg.seed)
        recipe.fit_extra(train_items)
        model = recipe.build_model().to(self.device)
        if cfg.compile:
            model.compile(dynamic=True)  # in place: the state dict keeps its keys
        if dist.enabled:
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        batches = recipe.train_batches(train_items, cfg.batch_size, seed=cfg.seed,
                                       rank=dist.rank, world_size=dist.world_size)
        if batches is None:
            batches = UtteranceBatches(recipe, train_items, GlobalBatchSampler(
                len(train_items), cfg.batch_size, seed=cfg.seed, rank=dist.rank,
                world_size=dist.world_size))
        total_steps = cfg.epochs * len(batches)
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        scheduler = warmup_cosine(optimizer, total_steps, int(cfg.warmup_fraction * total_steps))
        scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.amp == "fp16")

        start_epoch, step, history, best = 0, 0, [], None
        if resume and self.last_path.exists():
            state = load_checkpoint(self.last_path, recipe=recipe.name, map_location=self.device)
            _unwrap(model).load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            start_epoch, step = state["epoch"] + 1, state["step"]
            history, best = list(state["history"]), state["best"]
            set_rng_state(state["rng"])
            if dist.is_main:
                self._rewrite_metrics(history)
        elif dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._rewrite_metrics([])

        started = time.perf_counter()
        stopped_early = False
        for epoch in range(start_epoch, cfg.epochs):
            patience_spent = (best is not None and cfg.patience is not None
                              and epoch - best["epoch"] > cfg.patience)
            if dist.broadcast_flag(patience_spent):
                stopped_early = True
                break
            batches.set_epoch(epoch)
            record, step = self._train_epoch(model, batches, optimizer, scheduler, scaler,
                                             epoch, step)
            if val_items is not None and dist.is_main:
                record["val"] = evaluate(recipe, _unwrap(model), val_items,
                                         batch_size=cfg.eval_batch_size)
                if best is None or record["val"][cfg.monitor] > best[cfg.monitor]:
                    best = {"epoch": epoch, **record["val"]}
                    save_checkpoint(self._checkpoint_payload(
                        model, optimizer, scheduler, scaler, epoch, step, history + [record],
                        best), self.best_path)
            history.append(record)
            if dist.is_main:
                save_checkpoint(self._checkpoint_payload(model, optimizer, scheduler, scaler,
                                                         epoch, step, history, best),
                                self.last_path)
                with open(self.metrics_path, "a") as f:
                    f.write(json.dumps(record) + "\n")
            dist.barrier()

        model = _unwrap(model)
        if best is not None and self.best_path.exists() and dist.is_main:
            model.load_state_dict(load_checkpoint(self.best_path, recipe=recipe.name,
                                                  map_location=self.device)["model"])
        return FitResult(history, best, model, time.perf_counter() - started, stopped_early)

    def _train_epoch(self, model, batches: TrainBatches, optimizer, scheduler, scaler, epoch,
                     step):
        cfg, recipe = self.config, self.recipe
        model.train()
        loss_sum, seen = 0.0, 0
        started = time.perf_counter()
        bar = _progress(len(batches), f"epoch {epoch + 1}/{cfg.epochs}",
                        cfg.progress and self.dist.is_main)
        for train_step in batches:
            batch = move_to(train_step.batch, self.device)
            with self._autocast():
                own = recipe.step_gradients(_unwrap(model), batch)
                loss = recipe.loss(model, batch) if own is None else own.loss
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"{recipe.name}: the training loss became {loss.item()} at epoch {epoch + 1}, "
                    f"step {step + 1} (lower the learning rate or check the inputs)")
            optimizer.zero_grad(set_to_none=True)
            if own is None:
                scaler.scale(loss * train_step.share).backward()
            else:
                self._set_gradients(model, own.gradients, train_step.share, scaler)
            if cfg.grad_clip is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            loss_sum += loss.item() * train_step.count
            seen += train_step.count
            elapsed = time.perf_counter() - started
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", utt_s=f"{seen / max(elapsed, 1e-9):.1f}")
        bar.close()
        seconds = time.perf_counter() - started
        record = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(seen, 1),
            "lr": scheduler.get_last_lr()[0],
            "seconds": seconds,
            "utterances_per_second": seen * self.dist.world_size / max(seconds, 1e-9),
        }
        record.update(recipe.epoch_logs())
        return record, step

    def _set_gradients(self, model: nn.Module, gradients: list[torch.Tensor], share: float,
                       scaler) -> None:
        """The recipe's own gradients as the parameters' .grad: scaled by the step's share
        and averaged over processes (what DDP does for back-propagated losses)."""
        if scaler.is_enabled():
            raise SettingsError(f"{self.recipe.name} computes its own gradients, which fp16 loss "
                             "scaling cannot scale; use amp='bf16' or 'off'")
        params = list(_unwrap(model).parameters())
        if len(gradients) != len(params):
            raise ValueError(f"{self.recipe.name}: step_gradients gave {len(gradients)} "
                             f"gradients for {len(params)} parameters")
        for param, grad in zip(params, gradients):
            param.grad = (grad * share).to(param.dtype)
            if self.dist.enabled:
                torch.distributed.all_reduce(param.grad)
                param.grad /= self.dist.world_size

    def _rewrite_metrics(self, history: list[dict[str, Any]]) -> None:
        """metrics.jsonl from the checkpoint's history (a killed run may have written a line
        for an epoch whose checkpoint never landed)."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.metrics_path.with_suffix(".jsonl.tmp")
        with open(tmp, "w") as f:
            for record in history:
                f.write(json.dumps(record) + "\n")
        os.replace(tmp, self.metrics_path)


class UtteranceBatches(TrainBatches):
    """The default training steps: ``sampler``'s shuffled batches of items, collated by the
    recipe.  Each rank's mean loss is weighted by its share of the global batch, so the
    averaged DDP gradient is the gradient of the global batch mean."""

    def __init__(self, recipe: Recipe, items: Sequence[Any], sampler: GlobalBatchSampler) -> None:
        self.recipe, self.items, self.sampler = recipe, items, sampler

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        global_sizes = [len(b) for b in self.sampler.global_batches()]
        for indices, global_size in zip(self.sampler, global_sizes):
            yield TrainStep(self.recipe.collate([self.items[i] for i in indices]),
                            len(indices) * self.sampler.world_size / global_size, len(indices))


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def set_postfix(self, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, file=sys.stderr, dynamic_ncols=True,
                disable=not sys.stderr.isatty())
