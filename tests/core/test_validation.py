"""Checks and normalisation of keys and values, and secret redaction (autolog/validation.py)."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest

from autolog.validation import (
    MAX_KEY_LENGTH,
    REDACTED,
    check_key,
    is_secret_name,
    metric_value,
    normalize_key,
    redact_argv,
    redact_value,
    strip_url_credentials,
    truncate,
    value_to_text,
)


@pytest.mark.parametrize("key", ["loss", "val/loss", "epoch 1", "a-b_c.d:e", "x" * MAX_KEY_LENGTH])
def test_valid_keys_pass(key):
    assert check_key(key) == key


@pytest.mark.parametrize("key", ["", "a..b", "/root", "tab\there", "é", "x" * (MAX_KEY_LENGTH + 1), "semi;colon"])
def test_invalid_keys_raise_value_error_with_the_key(key):
    with pytest.raises(ValueError) as excinfo:
        check_key(key, "metric key")
    assert "invalid metric key" in str(excinfo.value)


def test_non_text_keys_raise_type_error():
    with pytest.raises(TypeError, match="param key must be a string, not int"):
        check_key(5, "param key")


@pytest.mark.parametrize("raw, expected", [
    ("ok_key", "ok_key"),
    ("bad key!", "bad key_"),
    ("/leading", "leading"),
    ("a..b", "a._b"),
    ("a...b", "a._.b"),
    ("", "_"),
    (("tuple", 1), "__tuple__ 1_"),
    (7, "7"),
    ("ü-umlaut", "_-umlaut"),
])
def test_normalize_key_makes_any_key_valid(raw, expected):
    key = normalize_key(raw)
    assert key == expected
    assert check_key(key) == key


def test_normalize_key_cuts_long_keys():
    assert normalize_key("k" * 1000) == "k" * MAX_KEY_LENGTH


@pytest.mark.parametrize("length, limit", [(10, 10), (11, 10), (100, 20), (100, 40), (10_000, 6000), (10**6, 6000), (50, 30)])
def test_truncate_keeps_the_limit_and_counts_what_was_cut(length, limit):
    text = "".join(chr(ord("a") + i % 26) for i in range(length))
    out = truncate(text, limit)
    assert len(out) <= limit
    if length <= limit:
        assert out == text
    elif limit < len(f"...[truncated {length} chars]"):
        assert out == text[:limit]  # no room for the marker: a plain cut, still within the limit
    else:
        kept = out.index("...[truncated ")
        assert out[:kept] == text[:kept]
        assert out.endswith(f"...[truncated {length - kept} chars]")


def test_value_to_text():
    assert value_to_text("text") == "text"
    assert value_to_text(None) == "None"
    assert value_to_text(True) == "True"
    assert value_to_text(3) == "3"
    assert value_to_text(0.1) == "0.1"
    assert value_to_text([1, "a"]) == "[1, 'a']"
    assert value_to_text(Fraction(1, 3)) == "Fraction(1, 3)"

    class BrokenRepr:
        def __repr__(self):
            raise ValueError("nope")

    assert value_to_text(BrokenRepr()) == "<unrepresentable BrokenRepr>"
    assert len(value_to_text("x" * 100, limit=20)) == 20


@pytest.mark.parametrize("value, expected", [
    (1, 1.0), (0.5, 0.5), (True, 1.0), (np.float16(0.5), 0.5), (np.int8(-3), -3.0),
    (np.array(4.0), 4.0), (Decimal("1.25"), 1.25), (Fraction(1, 4), 0.25),
])
def test_metric_value_accepts_numbers(value, expected):
    out = metric_value(value)
    assert type(out) is float and out == expected


def test_metric_value_keeps_nan_and_infinities():
    assert math.isnan(metric_value(float("nan")))
    assert math.isnan(metric_value(np.float32("nan")))
    assert metric_value(np.inf) == math.inf
    assert metric_value(-math.inf) == -math.inf


@pytest.mark.parametrize("value", ["1.0", b"1", None, [1, 2], {"a": 1}, np.array([1.0, 2.0]), object()])
def test_metric_value_refuses_non_numbers(value):
    with pytest.raises((TypeError, ValueError), match="metric value must be a number"):
        metric_value(value)


def test_metric_value_accepts_torch_scalars():
    torch = pytest.importorskip("torch")
    assert metric_value(torch.tensor(0.25)) == 0.25
    assert metric_value(torch.tensor([7])) == 7.0
    with pytest.raises((TypeError, ValueError, RuntimeError)):
        metric_value(torch.tensor([1.0, 2.0]))


@pytest.mark.parametrize("name", ["password", "db_passwd", "API_KEY", "apikey", "secret", "auth_token", "access-key",
                                  "private_key", "credentials", "Authorization", "--pass"])
def test_secret_names(name):
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["learning_rate", "epochs", "batch_size", "path", "keyboard_layout"])
def test_ordinary_names(name):
    assert not is_secret_name(name)


def test_redact_argv():
    argv = ["train.py", "--password", "hunter2", "--api-key=abc", "--token", "t0k", "--lr", "0.1",
            "--url", "postgres://admin:s3cret@db:5432/x", "positional"]
    assert redact_argv(argv) == [
        "train.py", "--password", REDACTED, f"--api-key={REDACTED}", "--token", REDACTED, "--lr", "0.1",
        "--url", "postgres://db:5432/x", "positional",
    ]
    assert redact_argv(["--secret"]) == ["--secret"]  # a trailing flag without a value


def test_redact_value_and_urls():
    assert redact_value("db_password", "x") == REDACTED
    assert redact_value("endpoint", "https://u:p@host/api") == "https://host/api"
    assert redact_value("epochs", 3) == 3
    assert strip_url_credentials("see http://user@host and s3://k:v@bucket/p") == "see http://host and s3://bucket/p"
