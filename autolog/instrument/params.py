"""Params helpers: nested configs as dotted keys, call arguments as values, and the one test
of "is this a number".

An optimizer's config, a Trainer's settings or a booster's parameters often come as
nested mappings; a run's params are flat. `flatten` makes dotted keys with a depth
limit (a mapping deeper than that is kept whole, as one value). `describe_argument` turns
an argument of a training call into a param value that names data without holding it
(`ndarray(100, 4)`). `is_scalar_number` is the single answer, for every integration, to
"can this be logged as a metric value?".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def flatten(config: Mapping, prefix: str = "", sep: str = ".", max_depth: int = 5) -> dict:
    """`{"optimizer": {"lr": 0.1, "betas": (0.9, 0.99)}}` -> `{"optimizer.lr": 0.1, "optimizer.betas": (0.9, 0.99)}`.

    Keys are joined with `sep` under `prefix` (`prefix="model"` gives `"model.optimizer.lr"`);
    keys that are not strings are written with `str()`. Lists and tuples stay values. A key
    has at most `max_depth` parts below `prefix`: a mapping found at that depth is kept
    whole as the value (which also ends a mapping that contains itself). An empty nested
    mapping is kept as its own value, so no key disappears.
    """
    if max_depth < 1:
        raise ValueError(f"max_depth must be at least 1, not {max_depth!r}")
    flat: dict = {}
    _flatten_into(flat, config, prefix, sep, max_depth)
    return flat


def _flatten_into(flat: dict, mapping: Mapping, prefix: str, sep: str, depth_left: int) -> None:
    for key, value in mapping.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value and depth_left > 1:
            _flatten_into(flat, value, name, sep, depth_left - 1)
        else:
            flat[name] = value


def describe_argument(value: Any) -> Any:
    """An argument of a training call as a param value: None, bools, numbers and text as they
    are; arrays, tensors and data frames by type and shape (`ndarray(100, 4)`), never their
    content; mappings, lists and tuples element by element; any other object by its type's name."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if is_array_like(value):
        return f"{type(value).__name__}{tuple(value.shape)}"
    if isinstance(value, Mapping):
        return {key: describe_argument(item) for key, item in value.items()}
    if isinstance(value, list):
        return [describe_argument(item) for item in value]
    if isinstance(value, tuple):
        return tuple(describe_argument(item) for item in value)
    return type(value).__name__


def is_array_like(value: Any) -> bool:
    """Has a shape and a dtype (or dtypes): numpy arrays, framework tensors, pandas objects."""
    return hasattr(value, "shape") and (hasattr(value, "dtype") or hasattr(value, "dtypes"))


def is_scalar_number(value: Any) -> bool:
    """True for an int or float (subclasses included), a numpy integer or floating scalar,
    or a 0-d array of such a dtype; False for bools (Python's and numpy's), complex
    numbers, strings, None, and arrays with any elements but one 0-d value."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    if getattr(value, "shape", None) != ():
        return False
    return getattr(getattr(value, "dtype", None), "kind", "") in ("i", "u", "f")
