"""Resuming a run: the stored run (``last.pt``) compared with the one asked for, so that
``--resume`` never continues a different experiment (another corpus, split, seed, model or
settings) under the old one's name.

What a run is made of, and which differences are safe:

- the method and its label set, its settings (safe: those declared ``resume_safe``, e.g.
  ``implementation`` and cache locations: the same model either way);
- the training options (safe: :data:`SAFE_OPTIONS`: more or fewer epochs, patience, the device,
  mixed precision, the evaluation batch size: the data and the model stay the same, the run
  continues from the same weights; progress bars are not compared);
- the run information the workflow stores (data source, protocol, fold, split, the speakers
  of each part and a digest of the utterance ids): never safe, since a speaker the model
  trained on could become a test speaker and the reported result would be invalid.

Any difference is a :class:`~fastser.errors.ResumeMismatchError` listing every one of them;
``force`` lets the safe ones through, never the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from fastser.errors import ResumeMismatchError
from fastser.train.recipe import Recipe

#: Training options a resumed run may change with ``force``.
SAFE_OPTIONS = ("epochs", "patience", "device", "amp", "eval_batch_size")
#: Training options that change nothing but the display: not compared.
IGNORED_OPTIONS = ("progress",)
_SHOWN = 6  # list items shown in a message


@dataclass(frozen=True)
class Difference:
    """One way the asked-for run differs from the stored one."""

    name: str
    stored: Any
    now: Any
    safe: bool

    def __str__(self) -> str:
        return f"{self.name} (stored {_show(self.stored)}, now {_show(self.now)})"


def differences(stored: Mapping[str, Any], recipe: Recipe, train_config: Mapping[str, Any],
                run_info: Mapping[str, Any]) -> list[Difference]:
    """How the run of ``recipe`` with ``train_config`` (TrainConfig as a dict) and
    ``run_info`` differs from the training checkpoint ``stored``. Entries a checkpoint of an
    earlier release did not store are not compared."""
    found = []
    if stored.get("recipe") != recipe.name:
        return [Difference("model", stored.get("recipe"), recipe.name, False)]
    state = stored.get("recipe_state", {})
    if list(state.get("label_names", recipe.label_names)) != recipe.label_names:
        found.append(Difference("labels", state["label_names"], recipe.label_names, False))
    if "settings" in state:
        now = recipe.settings.to_dict()
        then = recipe.Settings.upgrade(dict(state["settings"]))
        safe = set(recipe.Settings.resume_safe_settings())
        for key in sorted(set(now) | set(then)):
            if _plain(then.get(key)) != _plain(now.get(key)):
                found.append(Difference(f"setting {key}", then.get(key), now.get(key),
                                        key in safe))
    for key, value in stored.get("train_config", {}).items():
        if key in IGNORED_OPTIONS or key not in train_config:
            continue
        if _plain(value) != _plain(train_config[key]):
            name = "seed" if key == "seed" else f"option {key}"
            found.append(Difference(name, value, train_config[key], key in SAFE_OPTIONS))
    for key, value in stored.get("run", {}).items():
        if _plain(value) != _plain(run_info.get(key)):
            found.append(Difference(key, value, run_info.get(key), False))
    return found


def check_resume(stored: Mapping[str, Any], recipe: Recipe, train_config: Mapping[str, Any],
                 run_info: Mapping[str, Any], *, force: bool = False,
                 where: str = "the run folder") -> list[Difference]:
    """ResumeMismatchError listing every difference unless there is none, or ``force`` and
    all are safe; returns the (safe) differences let through."""
    found = differences(stored, recipe, train_config, run_info)
    unsafe = [d for d in found if not d.safe]
    if not found or (force and not unsafe):
        return found
    listed = "; ".join(map(str, found))
    if unsafe:
        advice = ("resume with the stored values, or train the new run into another --out"
                  + (f" (--force accepts only {', '.join(SAFE_OPTIONS)} and the settings "
                     "that give the same model)" if force else ""))
    else:
        advice = "pass --force to continue with these changes (they keep the run the same)"
    raise ResumeMismatchError(f"--resume: the run in {where} differs from the one asked for: "
                              f"{listed}; {advice}")


def _plain(value: Any) -> Any:
    """``value`` with tuples as lists (checkpoints and dataclasses disagree on sequences)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)) and len(value) > _SHOWN:
        return "[" + ", ".join(map(repr, value[:_SHOWN])) + f", ... ({len(value)} in all)]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    return repr(value)
