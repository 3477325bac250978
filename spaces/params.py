"""Parameter types of a search space.

Each type maps one-to-one onto an Optuna distribution (`FloatDistribution`, `IntDistribution`,
`CategoricalDistribution`), so a configuration is stored as plain Optuna params. A parameter
does not know its name: a `Space` binds it to one and checks its definition then, so that an
error names the parameter ("adamw.lr: low=0.1 must be below high=0.01 ...").

Every parameter also has a position in the unit interval (`to_unit` / `from_unit`) that the
space's `encode` / `decode` and the strategies' mutations work in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from tunelab.spaces.errors import SpaceError

Value = Any  # None | bool | int | float | str
_PRIMITIVES = (type(None), bool, int, float, str)


def _is_real(x: object) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def _is_int(x: object) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


class Param:
    """Base class of the parameter types (`Float`, `Int`, `Categorical`, `Fixed`)."""

    kind: ClassVar[str] = ""

    def check(self, name: str) -> None:
        """Raise `SpaceError` naming `name` if the definition is invalid."""
        raise NotImplementedError

    def sample(self, rng: np.random.Generator) -> Value:
        """Draw a value uniformly (on the log scale for `log=True`)."""
        raise NotImplementedError

    def contains(self, value: object) -> bool:
        """Whether `value` is a valid value of this parameter."""
        raise NotImplementedError

    def accepts(self, value: object) -> bool:
        """Whether `value` has this parameter's type, whatever its range (builders check this, spaces `contains`)."""
        return self.contains(value)

    def normalize(self, value: Value) -> Value:
        """Convert a valid value to its canonical Python type (numpy scalars to int/float)."""
        return value

    def default_value(self) -> Value:
        """The default (from the literature where the space gives one, else the middle)."""
        raise NotImplementedError

    def distribution(self) -> Any:
        """The equivalent `optuna.distributions.BaseDistribution`."""
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description, read back by `param_from_json`."""
        raise NotImplementedError

    def describe(self) -> str:
        """A short human-readable form of the definition."""
        return repr(self)


@dataclass(frozen=True)
class Float(Param):
    """A real number in `[low, high]`, uniform or log-uniform.

    Args:
        low: Lower bound (inclusive).
        high: Upper bound (inclusive), above `low`.
        log: Sample and encode on the log scale (both bounds must be positive).
        default: The value a one-shot run uses; the middle of the range (geometric for log) if None.
    """

    low: float
    high: float
    log: bool = False
    default: float | None = None
    kind: ClassVar[str] = "float"

    def check(self, name: str) -> None:
        """Raise `SpaceError` naming `name` if the definition is invalid."""
        if not (_is_real(self.low) and _is_real(self.high)):
            raise SpaceError(f"{name}: Float bounds must be numbers, got low={self.low!r}, high={self.high!r}")
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise SpaceError(f"{name}: Float bounds must be finite, got low={self.low}, high={self.high}")
        if not self.low < self.high:
            raise SpaceError(
                f"{name}: Float needs low < high, got low={self.low}, high={self.high}; "
                f"swap the bounds, or use Fixed({self.low}) for a constant"
            )
        if self.log and self.low <= 0:
            raise SpaceError(
                f"{name}: a log-scale Float needs low > 0, got low={self.low}; "
                f"raise low (e.g. to {self.high / 1e4:g}) or set log=False"
            )
        if self.default is not None and not self.contains(self.default):
            raise SpaceError(
                f"{name}: default={self.default!r} lies outside [{self.low}, {self.high}]; move it inside the range"
            )

    def _span(self) -> tuple[float, float]:
        if self.log:
            return math.log(self.low), math.log(self.high)
        return float(self.low), float(self.high)

    def to_unit(self, value: float) -> float:
        """Position of `value` in [0, 1] (log scale for log parameters)."""
        a, b = self._span()
        v = math.log(value) if self.log else float(value)
        return min(1.0, max(0.0, (v - a) / (b - a)))

    def from_unit(self, u: float) -> float:
        """The value at position `u` in [0, 1]."""
        a, b = self._span()
        u = min(1.0, max(0.0, float(u)))
        if u in (0.0, 1.0):  # the bounds exactly (exp(log(low)) may be off by an ulp)
            return float(self.low if u == 0.0 else self.high)
        v = a + u * (b - a)
        out = math.exp(v) if self.log else v
        return min(float(self.high), max(float(self.low), out))

    def sample(self, rng: np.random.Generator) -> float:
        """Draw a value uniformly (log-uniformly for `log=True`)."""
        return self.from_unit(rng.random())

    def contains(self, value: object) -> bool:
        """Whether `value` is a finite number inside the bounds."""
        return _is_real(value) and math.isfinite(value) and self.low <= value <= self.high

    def accepts(self, value: object) -> bool:
        """Whether `value` is a finite number (any range: a user's space may widen this one)."""
        return _is_real(value) and math.isfinite(value)

    def normalize(self, value: Value) -> float:
        """Return `value` as a Python float."""
        return float(value)

    def default_value(self) -> float:
        """The given default, else the (geometric) middle of the range."""
        return float(self.default) if self.default is not None else self.from_unit(0.5)

    def distribution(self) -> Any:
        """The equivalent `optuna.distributions.FloatDistribution`."""
        from optuna.distributions import FloatDistribution

        return FloatDistribution(float(self.low), float(self.high), log=self.log)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {"type": "float", "low": self.low, "high": self.high, "log": self.log, "default": self.default}

    def describe(self) -> str:
        """E.g. `float [0.0001, 0.1] log`."""
        return f"float [{self.low:g}, {self.high:g}]" + (" log" if self.log else "")


@dataclass(frozen=True)
class Int(Param):
    """An integer in `[low, high]`, uniform or log-uniform.

    Each integer owns an equal share of the unit interval (of the log interval
    `[log(low - 0.5), log(high + 0.5)]` for `log=True`), so sampling, encoding and decoding agree.

    Args:
        low: Lower bound (inclusive).
        high: Upper bound (inclusive), above `low`.
        log: Log-uniform (needs `low >= 1`).
        default: The value a one-shot run uses; the middle of the range if None.
    """

    low: int
    high: int
    log: bool = False
    default: int | None = None
    kind: ClassVar[str] = "int"

    def check(self, name: str) -> None:
        """Raise `SpaceError` naming `name` if the definition is invalid."""
        if not (_is_int(self.low) and _is_int(self.high)):
            raise SpaceError(f"{name}: Int bounds must be integers, got low={self.low!r}, high={self.high!r}")
        if not self.low < self.high:
            raise SpaceError(
                f"{name}: Int needs low < high, got low={self.low}, high={self.high}; "
                f"swap the bounds, or use Fixed({self.low}) for a constant"
            )
        if self.log and self.low < 1:
            raise SpaceError(f"{name}: a log-scale Int needs low >= 1, got low={self.low}; raise low or set log=False")
        if self.default is not None and not self.contains(self.default):
            raise SpaceError(
                f"{name}: default={self.default!r} is not an integer in [{self.low}, {self.high}]; "
                f"move it inside the range"
            )

    def _span(self) -> tuple[float, float]:
        if self.log:
            return math.log(self.low - 0.5), math.log(self.high + 0.5)
        return self.low - 0.5, self.high + 0.5

    def to_unit(self, value: int) -> float:
        """Centre of the share of the unit interval that `value` owns."""
        a, b = self._span()
        v = math.log(value) if self.log else float(value)
        return min(1.0, max(0.0, (v - a) / (b - a)))

    def from_unit(self, u: float) -> int:
        """The integer whose share of the unit interval holds `u`."""
        a, b = self._span()
        v = a + min(1.0, max(0.0, float(u))) * (b - a)
        out = math.exp(v) if self.log else v
        return int(min(self.high, max(self.low, round(out))))

    def sample(self, rng: np.random.Generator) -> int:
        """Draw a value (uniform over integers, or log-uniform)."""
        if not self.log:
            return int(rng.integers(self.low, self.high + 1))
        return self.from_unit(rng.random())

    def contains(self, value: object) -> bool:
        """Whether `value` is an integer inside the bounds (integral floats are accepted)."""
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        return _is_int(value) and self.low <= value <= self.high

    def accepts(self, value: object) -> bool:
        """Whether `value` is an integer (any range: a user's space may widen this one)."""
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        return _is_int(value)

    def normalize(self, value: Value) -> int:
        """Return `value` as a Python int."""
        return int(value)

    def default_value(self) -> int:
        """The given default, else the middle of the range."""
        return int(self.default) if self.default is not None else self.from_unit(0.5)

    def distribution(self) -> Any:
        """The equivalent `optuna.distributions.IntDistribution`."""
        from optuna.distributions import IntDistribution

        return IntDistribution(int(self.low), int(self.high), log=self.log)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {"type": "int", "low": self.low, "high": self.high, "log": self.log, "default": self.default}

    def describe(self) -> str:
        """E.g. `int [1, 4]`."""
        return f"int [{self.low}, {self.high}]" + (" log" if self.log else "")


@dataclass(frozen=True)
class Categorical(Param):
    """One of a finite tuple of values (None, bool, int, float or str).

    Args:
        choices: The values, at least two, without repeats.
        default: The value a one-shot run uses; the first choice if None.
    """

    choices: tuple[Value, ...]
    default: Value = None
    kind: ClassVar[str] = "categorical"
    _has_default: bool = field(default=False, repr=False, compare=False)

    def __init__(self, choices: Any, default: Value = None) -> None:
        object.__setattr__(self, "choices", tuple(choices) if not isinstance(choices, str) else (choices,))
        object.__setattr__(self, "default", default)
        object.__setattr__(self, "_has_default", default is not None)

    def check(self, name: str) -> None:
        """Raise `SpaceError` naming `name` if the definition is invalid."""
        if len(self.choices) < 2:
            raise SpaceError(
                f"{name}: Categorical needs at least two choices, got {list(self.choices)}; "
                f"use Fixed(value) for a constant"
            )
        bad = [c for c in self.choices if not isinstance(c, _PRIMITIVES)]
        if bad:
            raise SpaceError(
                f"{name}: Categorical choices must be None, bool, int, float or str (so they can be stored), "
                f"got {bad!r}; use their names and build the objects from the name"
            )
        if len({(type(c), c) for c in self.choices}) != len(self.choices):
            raise SpaceError(f"{name}: Categorical choices repeat: {list(self.choices)}")
        if self._has_default and not self.contains(self.default):
            raise SpaceError(f"{name}: default={self.default!r} is not one of {list(self.choices)}")

    def index(self, value: Value) -> int:
        """Position of `value` among the choices (type-exact, so True is not 1)."""
        for i, c in enumerate(self.choices):
            if type(c) is type(value) and c == value:
                return i
        for i, c in enumerate(self.choices):  # numpy scalars and ints for floats
            if _is_real(c) and _is_real(value) and c == value and not isinstance(c, bool):
                return i
        raise ValueError(f"{value!r} is not one of {list(self.choices)}")

    def sample(self, rng: np.random.Generator) -> Value:
        """Draw one of the choices uniformly."""
        return self.choices[int(rng.integers(len(self.choices)))]

    def contains(self, value: object) -> bool:
        """Whether `value` is one of the choices."""
        try:
            self.index(value)
        except ValueError:
            return False
        return True

    def normalize(self, value: Value) -> Value:
        """Return the stored choice equal to `value`."""
        return self.choices[self.index(value)]

    def default_value(self) -> Value:
        """The given default, else the first choice."""
        return self.default if self._has_default else self.choices[0]

    def distribution(self) -> Any:
        """The equivalent `optuna.distributions.CategoricalDistribution`."""
        from optuna.distributions import CategoricalDistribution

        return CategoricalDistribution(self.choices)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {"type": "categorical", "choices": list(self.choices), "default": self.default}

    def describe(self) -> str:
        """E.g. `one of relu, gelu`."""
        return "one of " + ", ".join(str(c) for c in self.choices)


@dataclass(frozen=True)
class Fixed(Param):
    """A constant, stored with the config (an Optuna categorical with one choice).

    Args:
        value: The value (None, bool, int, float or str).
    """

    value: Value
    kind: ClassVar[str] = "fixed"

    def check(self, name: str) -> None:
        """Raise `SpaceError` naming `name` if the value cannot be stored."""
        if not isinstance(self.value, _PRIMITIVES):
            raise SpaceError(f"{name}: Fixed values must be None, bool, int, float or str, got {self.value!r}")

    def sample(self, rng: np.random.Generator) -> Value:
        """Return the value."""
        return self.value

    def contains(self, value: object) -> bool:
        """Whether `value` equals the constant."""
        return (type(value) is type(self.value) and value == self.value) or (
            _is_real(value) and _is_real(self.value) and value == self.value
        )

    def normalize(self, value: Value) -> Value:
        """Return the constant."""
        return self.value

    def default_value(self) -> Value:
        """Return the value."""
        return self.value

    def distribution(self) -> Any:
        """A one-choice `optuna.distributions.CategoricalDistribution`."""
        from optuna.distributions import CategoricalDistribution

        return CategoricalDistribution((self.value,))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {"type": "fixed", "value": self.value}

    def describe(self) -> str:
        """E.g. `= 3`."""
        return f"= {self.value}"


def param_from_json(data: dict[str, Any]) -> Param:
    """Rebuild a parameter from `Param.to_json()`.

    Raises:
        SpaceError: The description has an unknown type.
    """
    kind = data.get("type")
    if kind == "float":
        return Float(data["low"], data["high"], log=data["log"], default=data.get("default"))
    if kind == "int":
        return Int(data["low"], data["high"], log=data["log"], default=data.get("default"))
    if kind == "categorical":
        return Categorical(data["choices"], default=data.get("default"))
    if kind == "fixed":
        return Fixed(data["value"])
    raise SpaceError(f"unknown parameter type {kind!r} in {data!r}; expected float, int, categorical or fixed")


def as_param(value: Any) -> Param:
    """Return `value` if it is a `Param`, else wrap a plain value into `Fixed`."""
    return value if isinstance(value, Param) else Fixed(value)
