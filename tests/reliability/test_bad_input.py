"""Bad input, tried systematically (hypothesis): keys, param values, metric values, steps.

Every input either round-trips exactly, gets the documented normalisation
(autolog/validation.py), or gets a clear error from the manual API; the automatic path
(normalize=True) never raises and never loses the neighbouring records.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import autolog
from autolog.validation import MAX_PARAM_VALUE_LENGTH, clean_text, normalize_key, truncate

pytestmark = pytest.mark.timeout(300)

FEW = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))

any_text = st.text(st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF), max_size=300)
surrogates = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=4)


class BrokenRepr:
    def __repr__(self):
        raise RuntimeError("repr fails")


@FEW
@given(key=any_text | st.sampled_from(["a/../b", "../x", "/abs", "ok/key", "x" * 300]) | surrogates)
def test_a_key_is_valid_or_refused_clearly_or_normalised(key):
    try:
        autolog.validation.check_key(key)
    except (ValueError, TypeError) as exc:
        assert "key" in str(exc)
    normal = normalize_key(key)
    autolog.validation.check_key(normal)  # the normalised key is always valid


@FEW
@given(value=any_text | surrogates | st.text(min_size=7000, max_size=9000))
def test_a_param_value_round_trips_or_is_normalised(value, store):
    with autolog.start_run() as run:
        autolog.log_param("p", value)
        autolog.log_metric("neighbour", 1.0)
    autolog.flush()
    stored = store().get_run(run.run_id)
    assert stored.params["p"] == truncate(clean_text(value), MAX_PARAM_VALUE_LENGTH)
    assert stored.metrics["neighbour"] == 1.0


@FEW
@given(value=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**53, 2**53),
                       st.sampled_from([np.float32(1.5), np.int64(3), np.array(2.0), True])),
       step=st.integers(-10, 10**6))
def test_a_metric_value_round_trips(value, step, store):
    with autolog.start_run() as run:
        autolog.log_metric("m", value, step=step)
    autolog.flush()
    history = store().get_metric_history(run.run_id, "m")
    expected = float(value)
    assert len(history) == 1 and history[0].step == step
    assert (math.isnan(history[0].value) and math.isnan(expected)) or history[0].value == expected


@pytest.mark.parametrize("bad", ["text", None, BrokenRepr(), [1, 2]])
def test_a_non_number_metric_is_a_clear_error(bad):
    with autolog.start_run():
        with pytest.raises((TypeError, ValueError), match="metric value"):
            autolog.log_metric("m", bad)


def test_the_automatic_path_never_raises_and_keeps_its_neighbours(store):
    params = {f"p{i}": i for i in range(10_000)}
    params.update({"broken": BrokenRepr(), "../up": 1, "lone\udcff": "v\udcff", "none": None})
    with autolog.start_run() as run:
        run.log_params(params, normalize=True)
        autolog.log_metric("neighbour", 2.0)
    autolog.flush()
    stored = store().get_run(run.run_id)
    assert len(stored.params) == len(params), len(stored.params)
    assert stored.params["broken"] == "<unrepresentable BrokenRepr>"
    assert stored.params["lone_"] == "v\ufffd"
    assert stored.metrics["neighbour"] == 2.0
