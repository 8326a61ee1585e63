"""Params helpers (autolog/instrument/params.py): flattening nested configs, the scalar check."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest

from autolog.instrument.params import describe_argument, flatten, is_array_like, is_scalar_number


def test_flatten_makes_dotted_keys_and_keeps_sequences_as_values():
    config = {"optimizer": {"lr": 0.1, "betas": (0.9, 0.99)}, "epochs": 3, "layers": [64, 32]}
    assert flatten(config) == {"optimizer.lr": 0.1, "optimizer.betas": (0.9, 0.99), "epochs": 3,
                               "layers": [64, 32]}


def test_flatten_prefix_separator_and_keys_that_are_not_text():
    config = {"opt": {"lr": 0.1}, 3: {None: "x"}}
    assert flatten(config, prefix="model") == {"model.opt.lr": 0.1, "model.3.None": "x"}
    assert flatten(config, sep="/") == {"opt/lr": 0.1, "3/None": "x"}


def test_flatten_keeps_what_is_deeper_than_max_depth_as_one_value():
    config = {"a": {"b": {"c": {"d": 1}}}, "top": 0}
    assert flatten(config, max_depth=2) == {"a.b": {"c": {"d": 1}}, "top": 0}
    assert flatten(config, max_depth=1) == config
    assert flatten(config) == {"a.b.c.d": 1, "top": 0}
    with pytest.raises(ValueError, match="max_depth"):
        flatten(config, max_depth=0)


def test_flatten_keeps_empty_mappings_and_ends_a_mapping_that_holds_itself():
    looped: dict = {"lr": 0.1}
    looped["self"] = looped
    flat = flatten({"empty": {}, "loop": looped}, max_depth=3)
    assert flat["empty"] == {}
    assert flat["loop.lr"] == 0.1 and flat["loop.self.lr"] == 0.1
    assert flat["loop.self.self"] is looped  # depth 3 reached: the mapping itself is the value


def test_flatten_does_not_change_the_config():
    config = {"optimizer": {"lr": 0.1}}
    flatten(config)
    assert config == {"optimizer": {"lr": 0.1}}


@pytest.mark.parametrize("value", [0, -3, 2.5, float("nan"), float("inf"), np.float32(1.5), np.float64(2.0),
                                   np.int8(3), np.uint64(7), np.array(1.0), np.array(4, dtype=np.int32)])
def test_scalar_numbers(value):
    assert is_scalar_number(value) is True


@pytest.mark.parametrize("value", [True, False, np.bool_(True), np.array(True), 1 + 2j, np.complex64(1),
                                   "1", b"1", None, [1.0], (1.0,), np.array([1.0]), np.zeros((1, 1)),
                                   np.array(1.0, dtype=object), Decimal("1.5"), Fraction(1, 2), {"a": 1}])
def test_not_scalar_numbers(value):
    assert is_scalar_number(value) is False


def test_an_object_with_an_empty_shape_but_no_numeric_dtype_is_not_a_number():
    class Tensorish:  # a 0-d framework tensor: shape () and a dtype numpy does not know
        shape = ()
        dtype = "float32"

    assert is_scalar_number(Tensorish()) is False


def test_describe_argument_names_data_by_type_and_shape_never_by_content():
    import pandas as pd

    class Loader:
        pass

    assert [describe_argument(v) for v in (None, True, 3, 0.5, "auto")] == [None, True, 3, 0.5, "auto"]
    assert describe_argument(np.zeros((100, 4))) == "ndarray(100, 4)"
    assert describe_argument(pd.DataFrame({"a": [1, 2]})) == "DataFrame(2, 1)"
    assert describe_argument((np.zeros(3), [np.zeros((2, 2)), 1])) == ("ndarray(3,)", ["ndarray(2, 2)", 1])
    assert describe_argument({"image": np.zeros((5, 8, 8)), "lr": 0.1}) == {"image": "ndarray(5, 8, 8)", "lr": 0.1}
    assert describe_argument(Loader()) == "Loader"
    assert describe_argument(iter([1])) == "list_iterator"
    assert is_array_like(np.float32(1)) and is_array_like(pd.Series([1.0]))
    assert not is_array_like([1, 2]) and not is_array_like(Loader())
