"""`autolog(disable=True)` puts back every patched attribute: identity, not just behaviour.

One parametrised test for every registered integration (the entry-point group
`autolog.integrations`, read when the tests are collected): snapshot `vars()` of
everything the integration may patch, enable, train (so that lazily patched classes are
patched too), check that something was patched, disable, and check that every attribute
is the very object it was and that training logs nothing any more.

The convention an integration follows to join it (nothing to add here): its test module,
`tests/integrations/test_<name>.py`, defines

- `identity_owners() -> list`: imports the library (`pytest.importorskip`, so the test is
  skipped where the library is not installed) and returns the classes and modules whose
  `vars()` to watch;
- `identity_train() -> None`: makes one training call of each kind the integration logs.

A registered integration without that module or those two functions fails this test,
loudly: a new integration cannot forget it.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest

import autolog
from autolog import runs
from autolog.instrument.integration import available

HERE = os.path.dirname(os.path.abspath(__file__))


def _test_module(name: str):
    """tests/integrations/test_<name>.py, imported under a name of its own (once)."""
    path = os.path.join(HERE, f"test_{name}.py")
    if not os.path.isfile(path):
        pytest.fail(f"integration {name!r} is registered but has no test module {path} "
                    "defining identity_owners() and identity_train()")
    module_name = f"autolog_identity_test_{name}"
    module = sys.modules.get(module_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)  # a module-level importorskip skips here
        except BaseException:
            del sys.modules[module_name]
            raise
    missing = [f for f in ("identity_owners", "identity_train") if not callable(getattr(module, f, None))]
    if missing:
        pytest.fail(f"{path} must define {' and '.join(missing)}() for the disable-identity test")
    return module


# pickle's own per-class cache (copyreg._slotnames), written the first time any instance
# of a class is pickled, by autolog's model snapshot as by the user's pickle.dump: not a patch
_NOT_PATCHES = {"__slotnames__"}


def _snapshot(owners: list) -> dict:
    return {owner: {k: v for k, v in vars(owner).items() if k not in _NOT_PATCHES} for owner in owners}


def _changed(before: dict) -> list:
    changed = []
    for owner, attributes in before.items():
        now = {k: v for k, v in vars(owner).items() if k not in _NOT_PATCHES}
        if set(now) != set(attributes):
            changed.append((owner, sorted(set(now) ^ set(attributes))))
            continue
        changed.extend((owner, key) for key, value in attributes.items() if now[key] is not value)
    return changed


def _count_runs() -> int:
    runs.flush()
    try:
        return len(autolog.search_runs(output_format="list"))
    except Exception:  # noqa: BLE001 - no store yet: nothing was logged
        return 0


def test_every_builtin_integration_is_registered():
    assert {"sklearn", "statsmodels"} <= set(available())


def test_an_integration_without_its_identity_functions_fails_loudly():
    with pytest.raises(pytest.fail.Exception, match="has no test module"):
        _test_module("no_such_integration")
    with pytest.raises(pytest.fail.Exception, match="must define identity_owners and identity_train"):
        _test_module("disable_identity")  # this module: a test module without the two functions


@pytest.mark.parametrize("name", sorted(available()))
def test_disable_restores_identity_and_stops_logging(name):
    module = _test_module(name)
    train = module.identity_train
    watched = module.identity_owners()
    before = _snapshot(watched)

    autolog.autolog(integrations=[name])
    train()
    assert _changed(before), f"{name}: nothing was patched"
    logged = _count_runs()
    assert logged >= 1

    autolog.autolog(disable=True)
    assert _changed(before) == []
    train()
    assert _count_runs() == logged

    autolog.autolog(integrations=[name])  # and again: patched and logging once more
    train()
    assert _count_runs() > logged
    autolog.autolog(disable=True)
    assert _changed(before) == []
