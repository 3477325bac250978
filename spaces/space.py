"""`Space` and `Choice`: conditional search spaces with flat dotted names.

Size: over 500 lines because `Space` is one immutable type whose methods are DESIGN section
2's API (sample, validate, active, encode/decode, mutate, neighbors, distributions, JSON); every
strategy reads it, and its methods share one private table of entries and conditions.

A `Space` is an immutable, ordered set of named parameters. A `Choice` is a categorical
parameter whose chosen branch activates a sub-space; the branch's parameters are named
`<branch>.<name>` (inside a branch of a branch: `<outer>.<branch>.<name>`), so every name is
flat and always means one distribution:

    >>> space = Space(Choice("optimizer", {"sgd": Space(lr=Float(1e-3, 1, log=True)),
    ...                                    "adamw": Space(lr=Float(1e-4, 1e-1, log=True))}))
    >>> sorted(space.sample(0))            # doctest: +SKIP
    ['adamw.lr', 'optimizer']

A configuration is a plain `dict[str, value]` holding the active parameters only.

The unit encoding (`encode` / `decode`) lays every parameter out at a fixed position:
one dimension per float or int parameter (log scale where `log=True`), one one-hot block per
categorical parameter or choice with at least two values, nothing for constants. Inactive
dimensions hold a neutral value (0.5 for numbers, 1/k in a one-hot block), so two configs that
differ only in inactive parameters encode alike.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tunelab.spaces.errors import ConfigError, SpaceError
from tunelab.spaces.params import Categorical, Fixed, Float, Int, Param, Value, as_param, param_from_json

Config = dict[str, Value]


def config_key(config: Mapping[str, Any]) -> str:
    """A hashable, order-independent key of a config (floats rounded to 12 significant digits)."""
    parts = []
    for k in sorted(config):
        v = config[k]
        parts.append(f"{k}={float(v):.12g}" if isinstance(v, float) else f"{k}={v!r}")
    return "|".join(parts)


SeedLike = int | np.random.Generator | None


def as_rng(seed: SeedLike) -> np.random.Generator:
    """Return `seed` if it is a `numpy.random.Generator`, else a new generator seeded with it."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


class Choice:
    """A categorical parameter whose value selects a branch sub-space.

    Args:
        name: The parameter's name (e.g. "optimizer").
        branches: Branch name -> `Space` (or None / an empty `Space` for a branch without
            parameters). Branch names prefix their parameters: branch "adamw" holds "adamw.lr".
        default: The branch a one-shot configuration takes; the first one if None.
    """

    def __init__(self, name: str, branches: Mapping[str, Space | None], default: str | None = None) -> None:
        if not isinstance(branches, Mapping) or not branches:
            raise SpaceError(f"Choice {name!r}: branches must be a non-empty mapping of name -> Space")
        self.name = name
        self.branches: dict[str, Space] = {}
        for key, sub in branches.items():
            if not isinstance(key, str) or not key or "." in key:
                raise SpaceError(f"Choice {name!r}: branch names must be non-empty strings without dots, got {key!r}")
            if sub is None:
                sub = Space()
            if not isinstance(sub, Space):
                raise SpaceError(f"Choice {name!r}: branch {key!r} must be a Space or None, got {type(sub).__name__}")
            self.branches[key] = sub
        if default is not None and default not in self.branches:
            raise SpaceError(f"Choice {name!r}: default {default!r} is not one of {list(self.branches)}")
        self.default = default

    def __repr__(self) -> str:
        return f"Choice({self.name!r}, {self.branches!r})"


@dataclass(frozen=True)
class Entry:
    """One flat parameter of a space.

    Attributes:
        name: Flat dotted name.
        param: Its definition (a `Choice` appears as a `Categorical` over its branch names).
        when: Conditions `(choice name, branch)` that must all hold for it to be active.
        is_choice: Whether this entry is a `Choice` that activates branches.
    """

    name: str
    param: Param
    when: tuple[tuple[str, str], ...] = ()
    is_choice: bool = False


@dataclass(frozen=True)
class Slot:
    """Where one parameter lives in the unit encoding: dimensions `[start, stop)`."""

    name: str
    kind: str  # "float" | "int" | "categorical"
    start: int
    stop: int


def _flatten(choices: tuple[Choice, ...], params: Mapping[str, Any], prefix: str, when: tuple) -> list[Entry]:
    entries: list[Entry] = []
    for name, value in params.items():
        if isinstance(value, Choice):
            if value.name != name:
                raise SpaceError(f"Choice {value.name!r} was given under the name {name!r}; use one name")
            choices = (*choices, value)
            continue
        if isinstance(value, Space):
            raise SpaceError(f"{prefix}{name}: nest spaces with Choice(...) or merge them with |, not as a parameter")
        full = prefix + name
        if not isinstance(name, str) or not name or name != name.strip() or " " in name:
            raise SpaceError(f"parameter names must be non-empty strings without spaces, got {full!r}")
        param = as_param(value)
        param.check(full)
        entries.append(Entry(full, param, when))
    for choice in choices:
        full = prefix + choice.name
        cat = (
            Categorical(tuple(choice.branches), default=choice.default)
            if len(choice.branches) > 1
            else Fixed(next(iter(choice.branches)))
        )
        cat.check(full)
        entries.append(Entry(full, cat, when, is_choice=True))
        for key, sub in choice.branches.items():
            branch_prefix = f"{prefix}{key}."
            for e in sub._entries:
                entries.append(
                    Entry(
                        branch_prefix + e.name,
                        e.param,
                        ((full, key), *_prefix_when(e.when, branch_prefix)),
                        e.is_choice,
                    )
                )
    return entries


def _merge_hint(name: str) -> str:
    """How to fix a merge conflict on `name`."""
    if name == "optimizer":
        return "give all families to one call: spaces.optimizers(['sgd', 'adamw', ...])"
    if name == "schedule":
        return "give all schedules to one call: spaces.schedules(['cosine', 'step', ...])"
    if name == "model" or name.startswith("model."):
        return ("a space holds one architecture family (spaces.mlp(), spaces.cnn() or spaces.cells()); search "
                "families in separate studies, or widen one family's ranges with .replace(...)")
    return f"to change a range, redefine it: space.replace(**{{{name!r}: Float(...)}})"


def _prefix_when(when: tuple[tuple[str, str], ...], prefix: str) -> tuple[tuple[str, str], ...]:
    return tuple((prefix + name, branch) for name, branch in when)


class Space:
    """An immutable, named set of parameters, possibly conditional.

    Size: about 400 lines, the methods of DESIGN section 2's API over one table of entries
    (splitting them would scatter the conditions they all read).

    Args:
        *choices: `Choice` parameters (each carries its own name).
        **params: Name -> parameter (`Float`, `Int`, `Categorical`, `Fixed`, a `Choice` under its own
            name, or a plain value, which becomes `Fixed`). Dotted names are allowed
            (`**{"model.depth": Int(1, 4)}`).

    Raises:
        SpaceError: A parameter is defined wrongly or a name is used twice.
    """

    def __init__(self, *choices: Choice, **params: Any) -> None:
        for c in choices:
            if not isinstance(c, Choice):
                raise SpaceError(
                    f"positional arguments of Space must be Choice objects, got {c!r}; name parameters "
                    f"with keywords: Space(lr=Float(...))"
                )
        self._init_entries(_flatten(tuple(choices), params, "", ()))

    def _init_entries(self, entries: list[Entry]) -> None:
        by_name: dict[str, Entry] = {}
        for e in entries:
            if e.name in by_name:
                raise SpaceError(f"parameter {e.name!r} is defined twice; a name must mean one distribution")
            by_name[e.name] = e
        for e in entries:
            for cond, _branch in e.when:
                if cond not in by_name or not by_name[cond].is_choice:
                    raise SpaceError(f"{e.name}: depends on {cond!r}, which is not a Choice of this space")
        self._entries: tuple[Entry, ...] = tuple(entries)
        self._by_name = by_name
        slots: list[Slot] = []
        d = 0
        for e in entries:
            p = e.param
            if isinstance(p, (Float, Int)):
                slots.append(Slot(e.name, p.kind, d, d + 1))
                d += 1
            elif isinstance(p, Categorical):
                k = len(p.choices)
                slots.append(Slot(e.name, "categorical", d, d + k))
                d += k
        self._slots = tuple(slots)
        self._dim = d

    @classmethod
    def _from_entries(cls, entries: list[Entry]) -> Space:
        space = cls.__new__(cls)
        space._init_entries(entries)
        return space

    # ----------------------------------------------------------------- structure
    @property
    def names(self) -> tuple[str, ...]:
        """All flat parameter names, in layout order."""
        return tuple(e.name for e in self._entries)

    @property
    def entries(self) -> tuple[Entry, ...]:
        """All flat entries (name, definition, activation conditions), in layout order."""
        return self._entries

    @property
    def layout(self) -> tuple[Slot, ...]:
        """The unit-encoding slots of the parameters that take dimensions."""
        return self._slots

    @property
    def dim(self) -> int:
        """Length of `encode(config)`."""
        return self._dim

    def __getitem__(self, name: str) -> Param:
        try:
            return self._by_name[name].param
        except KeyError:
            raise KeyError(f"no parameter {name!r} in this space; it has: {', '.join(self.names)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self._entries)

    def replace(self, **params: Param) -> Space:
        """A copy with the named parameters redefined: widen or narrow a built-in range.

        `spaces.optimizers(["sgd"]).replace(**{"sgd.lr": Float(1e-3, 10, log=True)})` searches
        SGD's learning rate over [1e-3, 10]; conditions (which branch activates it) are kept.

        Raises:
            SpaceError: An unknown name, a `Choice` (redefine its branches instead), or a bad definition.
        """
        entries = list(self._entries)
        for name, param in params.items():
            old = self._by_name.get(name)
            if old is None:
                raise SpaceError(f"replace: no parameter {name!r} in this space; it has: {', '.join(self.names)}")
            if old.is_choice:
                raise SpaceError(f"replace: {name!r} is a Choice between branches; build the space with the branches "
                                 f"you want instead (e.g. spaces.optimizers(['sgd', 'adamw']))")
            if not isinstance(param, Param):
                raise SpaceError(f"replace: {name} must be a Float, Int, Categorical or Fixed, got {param!r}")
            param.check(name)
            entries[entries.index(old)] = dataclasses.replace(old, param=param)
        return Space._from_entries(entries)

    def __or__(self, other: Space) -> Space:
        """Merge two spaces; identical definitions of a name are kept once, different ones refused."""
        if not isinstance(other, Space):
            return NotImplemented
        entries = list(self._entries)
        for e in other._entries:
            mine = self._by_name.get(e.name)
            if mine is None:
                entries.append(e)
            elif mine != e:
                raise SpaceError(
                    f"cannot merge spaces: {e.name!r} is defined differently in each "
                    f"({mine.param.describe()} vs {e.param.describe()}); {_merge_hint(e.name)}"
                )
        return Space._from_entries(entries)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Space) and self._entries == other._entries

    def __hash__(self) -> int:
        return hash(self._entries)

    def __repr__(self) -> str:
        lines = []
        for e in self._entries:
            cond = " if " + " and ".join(f"{c}={b}" for c, b in e.when) if e.when else ""
            lines.append(f"  {e.name}: {e.param.describe()}{cond}")
        return "Space(\n" + "\n".join(lines) + "\n)" if lines else "Space()"

    # ----------------------------------------------------------------- configs
    def _is_active(self, entry: Entry, config: Mapping[str, Value]) -> bool:
        return all(config.get(c) == b for c, b in entry.when)

    def active(self, config: Mapping[str, Value]) -> tuple[str, ...]:
        """Names of the parameters that `config`'s choices activate, in layout order."""
        return tuple(e.name for e in self._entries if self._is_active(e, config))

    def sample(self, rng: SeedLike = None) -> Config:
        """Draw a configuration: each active parameter independently and uniformly.

        Args:
            rng: A `numpy.random.Generator` (advanced in place) or a seed.
        """
        rng = as_rng(rng)
        config: Config = {}
        for e in self._entries:
            if self._is_active(e, config):
                config[e.name] = e.param.sample(rng)
        return config

    def default(self) -> Config:
        """The one-shot configuration: every parameter at its default (literature defaults where given)."""
        return self.complete({})

    def complete(self, config: Mapping[str, Value]) -> Config:
        """`config` with every active parameter it leaves out set to its default (what it gives is kept)."""
        out: Config = dict(config)
        for e in self._entries:
            if e.name not in out and self._is_active(e, out):
                out[e.name] = e.param.default_value()
        return out

    def validate(self, config: Mapping[str, Value], *, ranges: bool = True) -> Config:
        """Check a configuration and return it in canonical form (only active keys, Python types).

        Args:
            config: The configuration.
            ranges: Also check that numbers lie in their ranges. Builders (`build_optimizer`,
                `build_schedule`) pass False: the space a study searches defines the ranges, and
                it may have widened a family's defaults (`Space.replace`).

        Raises:
            ConfigError: Unknown, missing, inactive or out-of-range parameters; the message lists them all.
        """
        if not isinstance(config, Mapping):
            raise ConfigError(f"a config must be a dict of parameter name -> value, got {type(config).__name__}")
        problems: list[str] = []
        unknown = [k for k in config if k not in self._by_name]
        if unknown:
            problems.append(f"unknown parameters {unknown} (the space has: {', '.join(self.names)})")
        out: Config = {}
        for e in self._entries:
            if not self._is_active(e, out):
                if e.name in config:
                    conds = ", ".join(f"{c}={b!r}" for c, b in e.when)
                    problems.append(f"{e.name} is inactive here (it needs {conds}); drop it")
                continue
            if e.name not in config:
                problems.append(f"{e.name} is missing ({e.param.describe()})")
                continue
            value = config[e.name]
            if not (e.param.contains(value) if ranges else e.param.accepts(value)):
                problems.append(f"{e.name}={value!r} is not valid ({e.param.describe()})")
                continue
            out[e.name] = e.param.normalize(value)
        if problems:
            raise ConfigError("invalid config: " + "; ".join(problems))
        return out

    def distributions(self, config: Mapping[str, Value] | None = None) -> dict[str, Any]:
        """Optuna distributions of the parameters active in `config` (of all parameters if None)."""
        return {
            e.name: e.param.distribution()
            for e in self._entries
            if config is None or (self._is_active(e, config) and e.name in config)
        }

    # ----------------------------------------------------------------- encoding
    def encode(self, config: Mapping[str, Value]) -> np.ndarray:
        """Map a configuration to a point of `[0, 1]^dim` (see the module docstring for the layout).

        Returns:
            A float64 array of shape `(dim,)`.
        """
        x = np.empty(self._dim, dtype=np.float64)
        for slot in self._slots:
            e = self._by_name[slot.name]
            active = self._is_active(e, config) and slot.name in config
            if slot.kind == "categorical":
                block = x[slot.start : slot.stop]
                if active:
                    block[:] = 0.0
                    block[e.param.index(config[slot.name])] = 1.0
                else:
                    block[:] = 1.0 / (slot.stop - slot.start)
            else:
                x[slot.start] = e.param.to_unit(config[slot.name]) if active else 0.5
        return x

    def decode(self, x: np.ndarray | Any) -> Config:
        """Map a point of `[0, 1]^dim` back to a valid configuration.

        Numbers are clipped into range and integers rounded; a one-hot block picks its arg-max.

        Raises:
            ConfigError: `x` does not have length `dim`.
        """
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if x.shape[0] != self._dim:
            raise ConfigError(f"decode needs a vector of length {self._dim} (this space's dim), got {x.shape[0]}")
        slot_of = {s.name: s for s in self._slots}
        config: Config = {}
        for e in self._entries:
            if not self._is_active(e, config):
                continue
            slot = slot_of.get(e.name)
            if slot is None:  # Fixed / single-branch choice
                config[e.name] = e.param.default_value()
            elif slot.kind == "categorical":
                config[e.name] = e.param.choices[int(np.argmax(x[slot.start : slot.stop]))]
            else:
                config[e.name] = e.param.from_unit(float(x[slot.start]))
        return config

    # ----------------------------------------------------------------- local moves
    def _mutable(self, config: Mapping[str, Value]) -> list[Entry]:
        return [e for e in self._entries if self._is_active(e, config) and not isinstance(e.param, Fixed)]

    def _complete(self, config: Config, rng: np.random.Generator | None) -> Config:
        """Drop parameters made inactive and fill newly active ones (sampled, or at their defaults)."""
        out: Config = {}
        for e in self._entries:
            if self._is_active(e, out):
                if e.name in config:
                    out[e.name] = config[e.name]
                else:
                    out[e.name] = e.param.sample(rng) if rng is not None else e.param.default_value()
        return out

    def mutate(
        self, config: Mapping[str, Value], rng: SeedLike = None, *, scale: float = 0.2, name: str | None = None
    ) -> Config:
        """Change one active parameter of `config` (the mutation of regularized evolution).

        A categorical (or choice) takes a different value uniformly; a number moves by a Gaussian
        step of standard deviation `scale` in its unit position, reflected at the bounds, and an
        integer always moves by at least one. Parameters a changed choice activates are sampled.
        If the space has nothing to change, the config comes back unchanged (identity mutation).

        Args:
            config: A valid configuration.
            rng: A `numpy.random.Generator` or a seed.
            scale: Standard deviation of numeric steps in the unit interval.
            name: The parameter to change (default: one of the active, non-fixed parameters,
                uniformly).

        Returns:
            A new, valid configuration that differs from `config` in one choice or value
            (plus the parameters that choice activates or deactivates).

        Raises:
            ConfigError: `name` is not an active, non-fixed parameter of `config`.
        """
        rng = as_rng(rng)
        config = self.validate(config)
        candidates = self._mutable(config)
        if name is not None:
            candidates = [e for e in candidates if e.name == name]
            if not candidates:
                raise ConfigError(
                    f"mutate(name={name!r}): not an active, non-fixed parameter of this config; "
                    f"choose one of {[e.name for e in self._mutable(config)]}"
                )
        if not candidates:
            return dict(config)
        e = candidates[int(rng.integers(len(candidates)))]
        new = dict(config)
        p = e.param
        if isinstance(p, Categorical):
            others = [c for i, c in enumerate(p.choices) if i != p.index(config[e.name])]
            new[e.name] = others[int(rng.integers(len(others)))]
        else:
            u = p.to_unit(config[e.name])
            for _ in range(16):
                v = u + rng.normal(0.0, scale)
                v = abs(v) if v < 0 else (2.0 - v if v > 1 else v)
                value = p.from_unit(v)
                if value != config[e.name]:
                    break
            else:
                step = 1 if (isinstance(p, Int) and config[e.name] < p.high) or u < 0.5 else -1
                value = config[e.name] + step if isinstance(p, Int) else p.from_unit(u + step * scale)
            new[e.name] = value
        return self._complete(new, rng)

    def neighbors(self, config: Mapping[str, Value], *, step: float = 0.1) -> list[Config]:
        """The configurations one move away from `config`, deterministically.

        Each categorical (or choice) contributes every other value (a new branch starts at its
        defaults); each integer contributes its values one above and one below; each float
        contributes the values `step` below and above in its unit position (clipped).

        Args:
            config: A valid configuration.
            step: Size of a numeric move in the unit interval.

        Returns:
            Distinct valid configurations, none equal to `config`.
        """
        config = self.validate(config)
        out: list[Config] = []
        seen = {json.dumps(config, sort_keys=True)}
        for e in self._mutable(config):
            p = e.param
            if isinstance(p, Categorical):
                values = [c for c in p.choices if not (type(c) is type(config[e.name]) and c == config[e.name])]
            elif isinstance(p, Int):
                values = [v for v in (config[e.name] - 1, config[e.name] + 1) if p.low <= v <= p.high]
            else:
                u = p.to_unit(config[e.name])
                values = [p.from_unit(u - step), p.from_unit(u + step)]
            for value in values:
                cand = self._complete({**config, e.name: value}, None)
                key = json.dumps(cand, sort_keys=True)
                if key not in seen:
                    seen.add(key)
                    out.append(cand)
        return out

    # ----------------------------------------------------------------- serialisation
    def to_json(self) -> str:
        """A JSON string that `Space.from_json` turns back into an equal space."""
        return json.dumps(
            {
                "tunelab_space": 1,
                "params": [
                    {
                        "name": e.name,
                        "param": e.param.to_json(),
                        "when": [list(w) for w in e.when],
                        "choice": e.is_choice,
                    }
                    for e in self._entries
                ],
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, data: str | Mapping[str, Any]) -> Space:
        """Rebuild a space from `to_json()` output.

        Raises:
            SpaceError: The text is not a tunelab space description.
        """
        try:
            obj = json.loads(data) if isinstance(data, str) else dict(data)
            entries = [
                Entry(p["name"], param_from_json(p["param"]), tuple(tuple(w) for w in p["when"]), bool(p["choice"]))
                for p in obj["params"]
            ]
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, SpaceError):
                raise
            raise SpaceError(f"not a tunelab space description ({exc}); produce one with Space.to_json()") from exc
        for e in entries:
            e.param.check(e.name)
        return cls._from_entries(entries)


def branch(config: Mapping[str, Value], prefix: str) -> Config:
    """The parameters under `prefix.` with the prefix removed (`branch(c, "adamw")["lr"]`)."""
    head = prefix + "."
    return {k[len(head) :]: v for k, v in config.items() if k.startswith(head)}
