"""Limits on what a database may hold, and the checked reads that enforce them.

A database is untrusted input (someone may hand you one). Every number read from it that
sizes an allocation or a loop is checked against a limit here before it is used, and every
JSON value is parsed with a nesting limit, so that opening, listing, reporting or resuming a
damaged or hostile database costs memory and time in proportion to what it stores, and fails
with a `StorageError` that names the trial or attribute and the limit, never with a
`MemoryError`, a `RecursionError` or a hang.

The limits (documented in the README's Security section):

- `MAX_JSON_DEPTH`: nesting of one stored JSON value (tunelab writes at most about 8);
- `MAX_EPOCHS`: epochs of one trial, so steps of one learning curve;
- `MAX_COUNT`: any other stored count (gradient evaluations, parameters, FLOPs, proposals);
- strategy arguments have their own limits, checked by each strategy's constructor
  (`search.base.check_int`), which `Strategy.from_spec` calls.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np

from tunelab.studies.errors import StorageError

MAX_JSON_DEPTH = 64
MAX_EPOCHS = 100_000
MAX_COUNT = 10**15

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_DAMAGED = "the database was edited or damaged; restore it from a copy, or delete the trial or study"


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in the JSON `text` (0 for a scalar).

    Brackets inside strings do not count. Linear in the length of `text`, no recursion.
    """
    bare = _STRING.sub("", text) if '"' in text else text
    codes = np.frombuffer(bare.encode("utf-8", "replace"), dtype=np.uint8)
    steps = (codes == ord("[")).astype(np.int64) + (codes == ord("{"))
    steps -= (codes == ord("]")).astype(np.int64) + (codes == ord("}"))
    return int(np.cumsum(steps).max(initial=0))


def loads(text: str | bytes, where: str) -> Any:
    """Parse one stored JSON value, refusing nesting deeper than `MAX_JSON_DEPTH`.

    Args:
        text: The stored text.
        where: What it is, for the message ("trial 3's user attribute 'metrics'").

    Raises:
        StorageError: The text is not JSON, or nests too deeply.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if not isinstance(text, str):
        raise StorageError(f"{where} is not stored as JSON text (got {type(text).__name__}); {_DAMAGED}")
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and json_depth(text) > MAX_JSON_DEPTH:
        raise StorageError(f"{where} nests JSON deeper than tunelab's limit of {MAX_JSON_DEPTH} levels; {_DAMAGED}")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as err:
        raise StorageError(f"{where} is not valid JSON ({type(err).__name__}: {str(err)[:120]}); {_DAMAGED}") from err


def count(value: Any, where: str, *, limit: int = MAX_COUNT, low: int = 0) -> int:
    """A stored whole number in `[low, limit]` (a float that is whole counts too).

    Raises:
        StorageError: Not a whole number, or out of range (naming `where` and the limit).
    """
    ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok and isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value, ok = int(value), True
    if not ok or not low <= value <= limit:
        raise StorageError(f"{where} is {_show(value)}, but it must be a whole number from {low} to {limit}; "
                           f"{_DAMAGED}")
    return int(value)


def optional_count(value: Any, where: str, *, limit: int = MAX_COUNT, low: int = 0) -> int | None:
    """`count`, with None (absent) passed through."""
    return None if value is None else count(value, where, limit=limit, low=low)


def number(value: Any, where: str) -> float | None:
    """A stored number as a float; None (and NaN, inf: JSON holds none of them finitely) gives None.

    Raises:
        StorageError: The value is not a number.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise StorageError(f"{where} is {_show(value)}, but it must be a number; {_DAMAGED}")
    try:
        x = float(value)
    except OverflowError:
        return None
    return x if math.isfinite(x) else None


def text(value: Any, where: str, *, limit: int = 1_000_000) -> str | None:
    """A stored string (None passes through); other JSON values are refused."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise StorageError(f"{where} is {_show(value)}, but it must be text; {_DAMAGED}")
    return value[:limit]


def mapping(value: Any, where: str) -> dict[str, Any]:
    """A stored JSON object as a dict (None gives {}); other JSON values are refused."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise StorageError(f"{where} is {_show(value)}, but it must be a JSON object; {_DAMAGED}")
    return dict(value)


def _show(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."
