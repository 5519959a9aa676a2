"""The search space: named config parameters, each with its ordered allowed values.

A node of the search is one config: a level (allowed value) of every parameter. Two nodes are
neighbours when they differ in one parameter by one step of its value list (the UCB tree's
mutations). The default space is the seed's explorable set (``SEED_SPACE``, the study design's
"Config Parameters (explorable)" table); any dotted config key may be searched too, e.g. the
V_rest levers ``training.coeff_g_phi_silent`` or ``training.derivative_target``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from flyvis_study.config import ConfigError, load_run_config

# the seed's explorable parameters: short name -> (config key, allowed values in order)
SEED_SPACE: dict[str, tuple[str, tuple]] = {
    "alternate_joint_ratio": ("training.alternate_joint_ratio", (0.2, 0.3, 0.4, 0.5, 0.6)),
    "alternate_lr_ratio": ("training.alternate_lr_ratio", (0.01, 0.05, 0.1, 0.2, 0.3)),
    "n_epochs": ("training.n_epochs", (2, 3)),
    "data_augmentation_loop": ("training.data_augmentation_loop", (20, 25, 30)),
}


class SpaceError(ValueError):
    """A search-space entry is invalid; one line naming it and what is allowed."""


@dataclass(frozen=True)
class Parameter:
    """One searched parameter: its ``name`` in logs and Optuna, the dotted config ``key`` it sets,
    and its allowed ``values`` in order (a neighbour is one step along them)."""

    name: str
    key: str
    values: tuple

    def neighbours(self, value) -> list:
        """The allowed values one step from ``value``."""
        i = self.values.index(value)
        return [self.values[j] for j in (i - 1, i + 1) if 0 <= j < len(self.values)]


Levels = tuple  # a node: one value per parameter, in the space's order


@dataclass(frozen=True)
class SearchSpace:
    """Parameters in order; ``root`` is the parent of every first mutation (the base config's
    values, each moved to the nearest allowed value)."""

    parameters: tuple[Parameter, ...]
    root: Levels

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.parameters]

    @property
    def size(self) -> int:
        """The number of configs (nodes) in the space."""
        n = 1
        for p in self.parameters:
            n *= len(p.values)
        return n

    def as_dict(self, levels: Levels) -> dict[str, Any]:
        return dict(zip(self.names, levels))

    def levels_of(self, params: dict[str, Any]) -> Levels:
        return tuple(params[n] for n in self.names)

    def overrides(self, levels: Levels) -> dict[str, Any]:
        """The dotted config overrides of a node."""
        return {p.key: v for p, v in zip(self.parameters, levels)}

    def children(self, levels: Levels) -> list[tuple[Levels, str]]:
        """Every neighbour of a node, with its mutation ('name: old -> new'), in parameter order."""
        out = []
        for i, p in enumerate(self.parameters):
            for value in p.neighbours(levels[i]):
                child = levels[:i] + (value,) + levels[i + 1:]
                out.append((child, f"{p.name}: {levels[i]} -> {value}"))
        return out

    def mutation(self, parent: Levels | None, child: Levels) -> str:
        """'name: old -> new; ...' for each parameter that differs; 'none' if equal."""
        if parent is None:
            return "none (the root: the base config at the preset)"
        parts = [f"{p.name}: {a} -> {b}" for p, a, b in zip(self.parameters, parent, child) if a != b]
        return "; ".join(parts) if parts else "none (a replicate of the parent, on its next seed pair)"

    def distance(self, a: Levels, b: Levels) -> int:
        """Steps between two nodes (sum over parameters of the index difference)."""
        return sum(abs(p.values.index(x) - p.values.index(y)) for p, x, y in zip(self.parameters, a, b))

    def all_nodes(self) -> list[Levels]:
        return list(itertools.product(*(p.values for p in self.parameters)))


def build_space(space: dict[str, list] | None, base_config: str, preset: str,
                overrides: dict | None = None) -> SearchSpace:
    """The validated search space: ``space`` maps a seed short name (``SEED_SPACE``) or a dotted
    config key to its allowed values (None: the seed's explorable set). Every value is resolved
    into a config here (bad key or value: ``SpaceError``, one line), before any run."""
    space = {name: list(values) for name, (_, values) in SEED_SPACE.items()} if space is None else space
    if not isinstance(space, dict) or not space:
        raise SpaceError("space: a mapping {parameter: [allowed values]} with at least one parameter")
    parameters = []
    for name, values in space.items():
        key = SEED_SPACE[name][0] if name in SEED_SPACE else name
        if "." not in key:
            raise SpaceError(f"space: unknown parameter {name!r}; allowed: {', '.join(SEED_SPACE)} or a dotted "
                             "config key such as training.coeff_g_phi_silent")
        if not isinstance(values, (list, tuple)) or not values:
            raise SpaceError(f"space.{name}: a non-empty list of allowed values (got {values!r})")
        if len(set(map(repr, values))) != len(values):
            raise SpaceError(f"space.{name}: each value once (got {list(values)})")
        for value in values:
            try:
                load_run_config(base_config, preset=preset, overrides={**(overrides or {}), key: value})
            except ConfigError as err:
                text = " ".join(line.strip() for line in str(err).splitlines())
                raise SpaceError(f"space.{name}={value!r}: {text}") from None
        parameters.append(Parameter(name, key, tuple(values)))
    base = load_run_config(base_config, preset=preset, overrides=overrides or {}).model_dump(mode="json")
    root = tuple(_nearest(p.values, _get(base, p.key)) for p in parameters)
    return SearchSpace(tuple(parameters), root)


def _get(tree: dict, key: str):
    for part in key.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree


def _nearest(values: tuple, value):
    """``value`` if allowed, else the nearest allowed number, else the first value."""
    if value in values:
        return value
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if isinstance(value, (int, float)) and numbers:
        return min(numbers, key=lambda v: abs(v - value))
    return values[0]
