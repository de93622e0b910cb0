"""The trainer every method shares: AdamW or Adam, mixed precision (bf16 on GPUs and
bf16-capable CPUs), optionally torch.compile, gradient clipping, warm-up +
cosine (or constant) schedule, early stopping on a validation split, model selection (best
validation epoch by UA, F1 or loss; last epoch; the mean of the last epochs' weights),
class-balanced sampling, augmentation (the recipe's training items), seeds, progress bars,
per-epoch JSON-lines metrics, atomic checkpoints and exact resumption, DistributedDataParallel
under torchrun.

Methods fitted in ``Recipe.fit_extra`` (``Recipe.gradient_trained = False``) run one epoch
that only evaluates and checkpoints."""

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
from fastser.devices import resolve_device
from fastser.distributed import DistContext, init_distributed
from fastser.errors import SettingsError, TrainingDiverged, UserError
from fastser.outputs import write_text
from fastser.train.averaging import WeightAverage
from fastser.train.evaluation import evaluate, mean_loss
from fastser.train.kit.balance import balanced_item_weights
from fastser.train.precision import AMP_MODES, autocast
from fastser.train.recipe import Recipe, TrainBatches, TrainStep, move_to
from fastser.train.resume import check_resume
from fastser.train.rng import rng_state, set_rng_state
from fastser.train.sampler import GlobalBatchSampler
from fastser.train.schedule import SCHEDULES, make_schedule

#: adamw: decoupled weight decay (torch.optim.AdamW); adam: torch.optim.Adam (weight decay, if
#: any, as an L2 term in the gradient).
OPTIMIZERS = ("adamw", "adam")
#: Validation metrics of the emotion classes, higher is better.
CLASS_MONITORS = ("ua", "wa", "micro_f1", "macro_f1", "weighted_f1")
#: Validation metrics early stopping and model selection can monitor: "auto" (UA for models
#: with emotion classes, else the mean CCC of their affect targets), the class metrics and
#: "ccc", higher is better; "loss" (the recipe's loss over the validation items, the mean per
#: utterance) lower is better.
MONITORS = ("auto", *CLASS_MONITORS, "ccc", "loss")
#: The final model: the best validation epoch by ``monitor`` (the last epoch without
#: validation), the last epoch, or the mean of the last ``average_epochs`` epochs' weights.
SELECTIONS = ("best", "last", "average")
CLASS_BALANCE = ("none", "sampler")
_FLOAT32_MAX = float(torch.finfo(torch.float32).max)
#: What ``grad_clip`` takes to switch clipping off (besides None).
CLIP_OFF = "off"
#: The options ``fastser train`` and ``cv`` take as flags (``--batch-size`` for batch_size).
COMMAND_LINE_OPTIONS = ("epochs", "batch_size", "lr", "weight_decay", "warmup_fraction",
                        "grad_clip", "optimizer", "schedule", "amp", "compile", "seed", "patience",
                        "monitor", "select", "average_epochs", "class_balance",
                        "validation_speakers", "device")


@dataclass
class TrainConfig:
    """Optimisation settings (the method's own settings live in its recipe): ``optimizer``
    (one of :data:`OPTIMIZERS`) at learning rate ``lr`` under ``schedule`` (warm-up over
    ``warmup_fraction`` of the steps, then cosine decay or constant), ``grad_clip`` (global
    norm; None: none), and the validation metric ``monitor`` (one of :data:`MONITORS`) that
    picks the best epoch and drives early stopping after ``patience`` epochs without a better
    one; ``select`` (one of :data:`SELECTIONS`) which model training returns. Every option is
    checked on construction, before any work: a SettingsError names the option (and its
    command-line flag) and what it accepts."""

    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.1
    grad_clip: float | None = 5.0
    optimizer: str = "adamw"
    schedule: str = "warmup_cosine"
    amp: str = "auto"
    compile: bool = False  # the model under torch.compile (dynamic shapes)
    seed: int = 0
    patience: int | None = None
    monitor: str = "auto"
    select: str = "best"
    average_epochs: int = 5
    class_balance: str = "none"
    validation_speakers: int = 1
    eval_batch_size: int = 32
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.grad_clip == CLIP_OFF:
            self.grad_clip = None
        _integer(self, "epochs", low=1)
        _integer(self, "batch_size", low=1)
        _integer(self, "eval_batch_size", low=1)
        _integer(self, "seed", low=0)
        _integer(self, "average_epochs", low=1)
        _integer(self, "validation_speakers", low=0)
        if self.patience is not None:
            _integer(self, "patience", low=1)
        _number(self, "lr", f"a finite number > 0 (at most {_FLOAT32_MAX:.3g}, for float32 "
                "weights)", lambda x: 0 < x <= _FLOAT32_MAX)
        _number(self, "weight_decay", "a finite number >= 0", lambda x: x >= 0)
        _number(self, "warmup_fraction", "a number in [0, 1)", lambda x: 0 <= x < 1)
        if self.grad_clip is not None:
            _number(self, "grad_clip", f"a finite number > 0, or {CLIP_OFF} (no clipping)",
                    lambda x: x > 0)
        for name, choices in (("amp", AMP_MODES), ("optimizer", OPTIMIZERS),
                              ("schedule", SCHEDULES), ("monitor", MONITORS),
                              ("select", SELECTIONS), ("class_balance", CLASS_BALANCE)):
            _choice(self, name, choices)
        if self.select == "average" and self.patience is not None:
            raise SettingsError("select='average' averages the last average_epochs of the "
                                "planned epochs, which early stopping (patience) would cut; "
                                "use one of them")
        for name in ("progress", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise _option_error(name, "true or false", getattr(self, name))
        # parseable and present (Trainer resolves it again, with its process's local rank)
        resolve_device(self.device, option=f"training option {_flag('device')}")

    def monitored(self, recipe: Recipe) -> str:
        """The validation metric that picks the best epoch: ``monitor``, where "auto" is UA
        for models with emotion classes, else the mean CCC of their affect targets. A
        SettingsError (before any training) for a metric the recipe's model has none of."""
        if self.monitor == "auto":
            return "ua" if recipe.predicts_emotion else "ccc"
        if (self.monitor in CLASS_MONITORS and not recipe.predicts_emotion) or \
                (self.monitor == "ccc" and not recipe.affect_targets):
            kind = "emotion classes" if self.monitor in CLASS_MONITORS else "affect targets"
            raise SettingsError(f"training option {_flag('monitor')}: {self.monitor} is a "
                                f"metric of {kind}, and this {recipe.name} model (targets "
                                f"{', '.join(recipe.targets)}) has none")
        return self.monitor

    def make_optimizer(self, params) -> torch.optim.Optimizer:
        """The optimiser of ``params`` at ``lr`` with ``weight_decay``."""
        kind = torch.optim.AdamW if self.optimizer == "adamw" else torch.optim.Adam
        return kind(params, lr=self.lr, weight_decay=self.weight_decay)


def _flag(name: str) -> str:
    """The option's name, with its command-line flag when it has one."""
    if name not in COMMAND_LINE_OPTIONS:
        return name
    return f"{name} (--{name.replace('_', '-')})"


def _option_error(name: str, accepted: str, value: Any) -> SettingsError:
    return SettingsError(f"training option {_flag(name)}: expected {accepted}, got {value!r}")


def _integer(config: TrainConfig, name: str, *, low: int) -> None:
    value = getattr(config, name)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
        setattr(config, name, value)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise _option_error(name, f"an integer >= {low}", value)


def _number(config: TrainConfig, name: str, accepted: str, valid) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or not valid(value):
        raise _option_error(name, accepted, value)
    setattr(config, name, float(value))


def _choice(config: TrainConfig, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(config, name)
    if value not in choices:
        raise _option_error(name, f"one of {', '.join(choices)}", value)



def better(metrics: dict[str, Any], best: dict[str, Any] | None, monitor: str) -> bool:
    """Whether validation ``metrics`` beat ``best`` (None: nothing yet) on ``monitor``."""
    if best is None:
        return True
    if monitor == "loss":
        return metrics["loss"] < best["loss"]
    return metrics[monitor] > best[monitor]


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
        return autocast(self.config.amp, self.device, cpu_bf16=self.recipe.cpu_bf16)

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
            resume: bool = False, force: bool = False,
            train_copies: Sequence[Sequence[Any]] | None = None) -> FitResult:
        """Train for ``config.epochs`` epochs (fewer with early stopping; one for a method
        fitted in ``fit_extra``).  ``train_copies``: each training item's augmented copies
        (``Recipe.augmented_copies``).  ``resume=True`` continues from ``out_dir/last.pt`` and
        ends where an uninterrupted run would; the stored run must be this one
        (:func:`fastser.train.resume.check_resume`: ``force`` lets safe differences through,
        such as more epochs).  A non-finite loss, gradient or weight stops training
        (TrainingDiverged naming the step) before anything non-finite is saved.  ``best.pt``
        holds the selected model."""
        cfg, recipe, dist = self.config, self.recipe, self.dist
        if len(train_items) == 0:
            raise UserError("fit: the training split is empty")
        started = time.perf_counter()
        seed_everything(cfg.seed)
        recipe.fit_extra(train_items)
        model = recipe.build_model().to(self.device)
        if cfg.compile:
            model.compile(dynamic=True)  # in place: the state dict keeps its keys
        if dist.enabled and recipe.gradient_trained:
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        training = recipe.training_items(train_items, train_copies, seed=cfg.seed)
        batches = self._batches(training, train_items)
        epochs = cfg.epochs if recipe.gradient_trained else 1
        total_steps = epochs * len(batches)
        optimizer = cfg.make_optimizer(model.parameters())
        scheduler = make_schedule(cfg.schedule, optimizer, total_steps,
                                  int(cfg.warmup_fraction * total_steps))
        scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.amp == "fp16")
        average = WeightAverage() if cfg.select == "average" else None

        start_epoch, step, history, best = 0, 0, [], None
        if resume and self.last_path.exists():
            state = load_checkpoint(self.last_path, recipe=recipe.name, map_location=self.device)
            check_resume(state, recipe, asdict(cfg), self.run_info, force=force,
                         where=str(self.out_dir))
            _unwrap(model).load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            start_epoch, step = state["epoch"] + 1, state["step"]
            history, best = list(state["history"]), state["best"]
            if average is not None:
                average.load_state(state["average"])
            set_rng_state(state["rng"])
            if dist.is_main:
                self._write_metrics(history)
        elif dist.is_main:
            self._write_metrics([])

        stopped_early = False
        monitor = cfg.monitored(recipe)
        for epoch in range(start_epoch, epochs):
            patience_spent = (best is not None and cfg.patience is not None
                              and epoch - best["epoch"] > cfg.patience)
            if dist.broadcast_flag(patience_spent):
                stopped_early = True
                break
            batches.set_epoch(epoch)
            training.set_epoch(epoch)
            if recipe.gradient_trained:
                record, step = self._train_epoch(model, batches, optimizer, scheduler, scaler,
                                                 epoch, step)
            else:
                record = self._fitted_epoch(model, train_items)
            if average is not None and epoch >= epochs - cfg.average_epochs:
                average.add(_unwrap(model))
            if val_items is not None and dist.is_main:
                record["val"] = self._validate(model, val_items, monitor)
                if better(record["val"], best, monitor):
                    best = {"epoch": epoch, **record["val"]}
                    if cfg.select == "best":
                        save_checkpoint(self._checkpoint_payload(
                            model, optimizer, scheduler, scaler, epoch, step,
                            history + [record], best), self.best_path)
            history.append(record)
            if dist.is_main:
                payload = self._checkpoint_payload(model, optimizer, scheduler, scaler, epoch,
                                                   step, history, best)
                if average is not None:
                    payload["average"] = average.state()
                save_checkpoint(payload, self.last_path)
                self._write_metrics(history)
            dist.barrier()

        model = _unwrap(model)
        if cfg.select == "best" and best is not None:
            if self.best_path.exists() and dist.is_main:
                model.load_state_dict(load_checkpoint(self.best_path, recipe=recipe.name,
                                                      map_location=self.device)["model"])
        else:
            best = self._select_final(model, average, val_items, history, best, monitor)
            if dist.is_main:
                save_checkpoint(self._checkpoint_payload(
                    model, optimizer, scheduler, scaler, len(history) - 1, step, history,
                    best), self.best_path)
        return FitResult(history, best, model, time.perf_counter() - started, stopped_early)

    def _batches(self, training: Sequence[Any], train_items: Sequence[Any]) -> TrainBatches:
        """The recipe's own training steps, or shuffled (or class-balanced) utterance
        batches of ``training``."""
        cfg, recipe, dist = self.config, self.recipe, self.dist
        batches = recipe.train_batches(training, cfg.batch_size, seed=cfg.seed,
                                       rank=dist.rank, world_size=dist.world_size)
        if batches is not None:
            if cfg.class_balance == "sampler":
                raise SettingsError(f"{recipe.name} samples its own training batches, so "
                                    "class_balance='sampler' does not apply to it")
            return batches
        weights = None
        if cfg.class_balance == "sampler":
            weights = balanced_item_weights([recipe.item_label(i) for i in train_items],
                                            recipe.num_classes)
        return UtteranceBatches(recipe, training, GlobalBatchSampler(
            len(training), cfg.batch_size, seed=cfg.seed, rank=dist.rank,
            world_size=dist.world_size, weights=weights))

    def _validate(self, model: nn.Module, val_items: Sequence[Any],
                  monitor: str) -> dict[str, Any]:
        """Validation metrics (and the validation loss when it is ``monitor``)."""
        cfg, recipe = self.config, self.recipe
        metrics = evaluate(recipe, _unwrap(model), val_items, batch_size=cfg.eval_batch_size)
        if monitor == "loss":
            metrics["loss"] = mean_loss(recipe, _unwrap(model), val_items,
                                        batch_size=cfg.eval_batch_size)
        return metrics

    def _select_final(self, model: nn.Module, average: WeightAverage | None,
                      val_items: Sequence[Any] | None, history: list[dict[str, Any]],
                      best: dict[str, Any] | None, monitor: str) -> dict[str, Any] | None:
        """Load the final model of select="last" / "average" (or of "best" without
        validation) into ``model``; its validation metrics (None without validation)."""
        if average is not None:
            average.apply(model)
        if val_items is None or not self.dist.is_main or not history:
            return None if val_items is None else best
        last = len(history) - 1
        if average is None and "val" in history[-1]:
            return {"epoch": last, **history[-1]["val"]}
        return {"epoch": last, "averaged_epochs": average.count if average else 1,
                **self._validate(model, val_items, monitor)}

    def _fitted_epoch(self, model: nn.Module, train_items: Sequence[Any]) -> dict[str, Any]:
        """The one epoch of a method fitted in fit_extra: its training loss, no steps."""
        started = time.perf_counter()
        loss = mean_loss(self.recipe, _unwrap(model), train_items,
                         batch_size=self.config.eval_batch_size)
        return {"epoch": 1, "train_loss": loss, "seconds": time.perf_counter() - started,
                "fitted": True}

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
            scaler.unscale_(optimizer)
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            grad_norm = (nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                         if cfg.grad_clip is not None else nn.utils.get_total_norm(grads))
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            self._check_finite(model, grad_norm, scaler, epoch, step)
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

    def _check_finite(self, model: nn.Module, grad_norm: torch.Tensor, scaler, epoch: int,
                      step: int) -> None:
        """TrainingDiverged when this step's gradient (except an fp16 overflow, which the
        loss scaler skips) or the weights after it are not finite."""
        weight_norm = nn.utils.get_total_norm(list(model.parameters()))
        grad_ok = scaler.is_enabled() or bool(torch.isfinite(grad_norm))
        if grad_ok and bool(torch.isfinite(weight_norm)):
            return
        cause = (f"the gradient norm became {float(grad_norm)}" if not grad_ok else
                 "the weights became non-finite after the optimiser step")
        raise TrainingDiverged(
            f"{self.recipe.name}: {cause} at epoch {epoch + 1}, step {step} (lower the learning "
            "rate, clip gradients, or check the inputs); the checkpoints of earlier epochs are "
            "kept, nothing of this epoch was saved")

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

    def _write_metrics(self, history: list[dict[str, Any]]) -> None:
        """metrics.jsonl, one line per epoch of ``history``, written atomically (a killed run
        leaves the lines of the epochs its last.pt holds)."""
        write_text(self.metrics_path, "".join(json.dumps(record) + "\n" for record in history))


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
