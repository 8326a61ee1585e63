"""The patching engine, on a real throwaway "ML library" written to tmp_path and imported.

The toy library has a model whose `fit` calls another class's inherited `fit` (a fit
inside a fit), a classmethod, a staticmethod and a module function. A test integration
(one class, the shape of every real one) is registered for the test with
`register_integration` (as an entry point would), and unregistered after it. The checks are the engine's promises: post-import hooks (enable before or
after the import), identity restored by disable (`vars()` snapshots; an inherited
method's attribute deleted, not set), enable twice patches once, the re-entrancy guard,
contained wrapper errors that never change the user's result or exception, one warning
for a repeating failure, KeyboardInterrupt passing through, and threads training at once.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import pickle
import sys
import textwrap
import threading
import uuid

import pytest

import autolog
from autolog.instrument import integration as integration_module
from autolog.backends.base import BackendError

LIBRARY = '''
"""A tiny ML library: just enough shape for the patching engine."""
import threading

CALLS = []
ERROR = ValueError("bad training data")
BARRIER = None  # a threading.Barrier the tests set to make fits overlap


class Base:
    def fit(self, X):
        CALLS.append(("fit", type(self).__name__))
        self.fitted_ = len(X)
        return self


class Scaler(Base):
    """Inherits fit from Base."""


class Model(Base):
    def fit(self, X, y=None, *, fail=None):
        """Fit the model."""
        CALLS.append(("fit", "Model"))
        if BARRIER is not None:
            BARRIER.wait(30)
        if fail == "value":
            raise ERROR
        if fail == "interrupt":
            raise KeyboardInterrupt
        self.scaler_ = Scaler().fit(X)  # a fit inside a fit
        self.n_ = len(X)
        return self

    @classmethod
    def from_size(cls, n):
        model = cls()
        model.n_ = n
        return model

    @staticmethod
    def score(a, b):
        return a * 10 + b


def train(X):
    return Model().fit(X)
'''

INTEGRATION = '''
"""A test integration of the toy library: one class, the shape of the real ones."""
import sys

from autolog.instrument.integration import Integration
from autolog.runs import TrainingCall

MODULE = {module!r}
# what the wrapper should do wrong, for the containment tests: None, or an exception to raise
FAULT = {{"before": None, "after": None}}


class ToyIntegration(Integration):
    name = "toy"
    module = MODULE
    requires = ""

    def patch(self, patcher):
        lib = sys.modules[MODULE]
        patcher.wrap(lib, "Model.fit", fit_wrapper)
        patcher.wrap(lib, "Scaler.fit", fit_wrapper)  # inherited: the patch is set on Scaler
        patcher.wrap(lib, "Model.from_size", passthrough)  # classmethod
        patcher.wrap(lib, "Model.score", passthrough)  # staticmethod
        patcher.wrap(lib, "train", passthrough)  # module function


def fit_wrapper(wrapped, instance, args, kwargs):
    with TrainingCall("toy", type(instance).__name__) as call:
        if FAULT["before"] is not None:
            raise FAULT["before"]
        result = wrapped(*args, **kwargs)
        if call.run is not None:
            call.run.log_param("n_rows", len(args[0]))
            call.run.log_metric("rows_seen", len(args[0]))
        if FAULT["after"] is not None:
            raise FAULT["after"]
        return result


def passthrough(wrapped, instance, args, kwargs):
    return wrapped(*args, **kwargs)
'''


class Toy:
    """Names of the toy library and its integration for one test."""

    def __init__(self, tmp_path, monkeypatch):
        suffix = uuid.uuid4().hex[:8]
        self.lib_name = f"toyml_{suffix}"
        self.int_name = f"toyml_autolog_{suffix}"
        (tmp_path / f"{self.lib_name}.py").write_text(textwrap.dedent(LIBRARY))
        (tmp_path / f"{self.int_name}.py").write_text(INTEGRATION.format(module=self.lib_name))
        monkeypatch.syspath_prepend(str(tmp_path))
        importlib.invalidate_caches()
        integration_module.register_integration("toy", f"{self.int_name}:ToyIntegration")

    def import_lib(self):
        return importlib.import_module(self.lib_name)

    @property
    def integration(self):
        return importlib.import_module(self.int_name)

    def cleanup(self):
        integration_module.unregister_integration("toy")
        for name in (self.lib_name, self.int_name):
            sys.modules.pop(name, None)


@pytest.fixture
def toy(tmp_path, monkeypatch):
    t = Toy(tmp_path, monkeypatch)
    yield t
    autolog.autolog(disable=True)
    t.cleanup()


def enable():
    return autolog.autolog(integrations=["toy"])


def snapshot(*owners):
    return [dict(vars(owner)) for owner in owners]


def same_objects(before, after):
    return [sorted(b) == sorted(a) and all(b[k] is a[k] for k in b) for b, a in zip(before, after)]


def toy_runs():
    try:
        found = autolog.search_runs(output_format="list")
    except BackendError as exc:  # the local store is made by the first run written to it
        assert "no autolog store" in str(exc)
        return []
    return [r for r in found if r.tags.get("autolog.integration") == "toy"]


def test_autolog_before_the_library_is_imported(toy):
    assert enable() == ["toy"]
    assert toy.lib_name not in sys.modules
    lib = toy.import_lib()  # the post-import hook patches it now
    lib.Model().fit([1, 2, 3])
    runs = toy_runs()
    assert len(runs) == 1
    assert runs[0].params == {"n_rows": "3"}
    assert runs[0].run_name.startswith("Model-")


def test_autolog_after_the_library_is_imported(toy):
    lib = toy.import_lib()
    original = vars(lib.Model)["fit"]
    enable()
    assert vars(lib.Model)["fit"] is not original
    lib.Model().fit([1, 2])
    assert [r.params for r in toy_runs()] == [{"n_rows": "2"}]


def test_disable_restores_the_original_objects(toy):
    lib = toy.import_lib()
    owners = (lib.Model, lib.Scaler, lib.Base, lib)
    before = snapshot(*owners)
    assert "fit" not in vars(lib.Scaler)
    enable()
    patched = snapshot(*owners)
    assert "fit" in vars(lib.Scaler)  # the inherited method was patched on the subclass
    assert vars(lib.Model)["fit"] is not before[0]["fit"]
    assert isinstance(inspect.getattr_static(lib.Model, "from_size"), classmethod)
    assert isinstance(inspect.getattr_static(lib.Model, "score"), staticmethod)
    assert patched[3]["train"] is not before[3]["train"]

    autolog.autolog(disable=True)
    assert same_objects(before, snapshot(*owners)) == [True, True, True, True]
    assert "fit" not in vars(lib.Scaler)  # deleted, not set to Base.fit
    lib.Model().fit([1])
    assert toy_runs() == []


def test_enable_twice_patches_once(toy):
    lib = toy.import_lib()
    enable()
    first = snapshot(lib.Model, lib.Scaler, lib)
    patcher = integration_module.engine.patched()["toy"]
    count = len(patcher.patches)
    assert enable() == ["toy"]
    autolog.autolog(integrations=["toy"], experiment="again")
    assert integration_module.engine.patched()["toy"] is patcher
    assert len(patcher.patches) == count == 5
    assert same_objects(first, snapshot(lib.Model, lib.Scaler, lib)) == [True, True, True]
    lib.Model().fit([1, 2])
    assert len(toy_runs()) == 1


def test_round_trip_enable_disable_enable(toy):
    lib = toy.import_lib()
    enable()
    lib.Model().fit([1])
    autolog.autolog(disable=True)
    lib.Model().fit([1, 2])
    assert len(toy_runs()) == 1
    enable()
    lib.Model().fit([1, 2, 3])
    assert sorted(r.params["n_rows"] for r in toy_runs()) == ["1", "3"]


def test_a_fit_inside_a_fit_is_logged_once(toy):
    lib = toy.import_lib()
    enable()
    lib.train([1, 2, 3, 4])  # train -> Model.fit -> Scaler.fit: all patched
    assert ("fit", "Scaler") in lib.CALLS
    runs = toy_runs()
    assert len(runs) == 1
    assert runs[0].run_name.startswith("Model-")
    # a Scaler fitted on its own is the outermost call and gets its own run
    lib.Scaler().fit([1])
    assert len(toy_runs()) == 2


def test_classmethod_staticmethod_and_function_still_work(toy):
    lib = toy.import_lib()
    enable()
    assert lib.Model.from_size(4).n_ == 4
    assert type(lib.Model.from_size(1)) is lib.Model
    assert lib.Model.score(1, 2) == 12
    assert lib.Model().score(3, 4) == 34
    assert lib.train([1]).n_ == 1


def test_wrappers_stay_introspectable_and_picklable(toy):
    lib = toy.import_lib()
    original_signature = inspect.signature(lib.Model.fit)
    enable()
    assert lib.Model.fit.__name__ == "fit"
    assert lib.Model.fit.__doc__ == "Fit the model."
    assert inspect.signature(lib.Model.fit) == original_signature
    assert lib.Model.fit.__wrapped__ is not None
    model = lib.Model().fit([1, 2])
    clone = pickle.loads(pickle.dumps(model))
    assert clone.n_ == 2 and type(clone) is lib.Model


def test_wrapper_failing_before_the_call_still_trains(toy, contained_errors):
    lib = toy.import_lib()
    enable()
    toy.integration.FAULT["before"] = RuntimeError("integration bug before")
    model = lib.Model()
    result = model.fit([1, 2, 3])
    assert result is model and model.n_ == 3
    assert lib.CALLS.count(("fit", "Model")) == 1  # the original ran exactly once
    assert model.scaler_.fitted_ == 3  # the nested, also faulty, wrapper fell back to its original too
    assert {where for where, _ in contained_errors} == {"toy: Model.fit", "toy: Base.fit"}
    assert {type(e) for _, e in contained_errors} == {RuntimeError}


def test_wrapper_failing_after_the_call_returns_the_users_result(toy, contained_errors):
    lib = toy.import_lib()
    enable()
    toy.integration.FAULT["after"] = RuntimeError("integration bug after")
    model = lib.Model()
    result = model.fit([1, 2])
    assert result is model and model.n_ == 2
    assert lib.CALLS.count(("fit", "Model")) == 1
    assert any("integration bug after" in str(e) for _, e in contained_errors)


def test_the_users_exception_passes_unchanged_and_fails_the_run(toy):
    lib = toy.import_lib()
    enable()
    with pytest.raises(ValueError) as excinfo:
        lib.Model().fit([1], fail="value")
    assert excinfo.value is lib.ERROR
    (run,) = toy_runs()
    assert run.status == "FAILED"
    assert run.tags["autolog.error"] == "ValueError: bad training data"


def test_keyboard_interrupt_passes_through(toy):
    lib = toy.import_lib()
    enable()
    with pytest.raises(KeyboardInterrupt):
        lib.Model().fit([1], fail="interrupt")
    (run,) = toy_runs()
    assert run.status == "KILLED"
    # a KeyboardInterrupt raised in autolog's own wrapper code is not swallowed either
    toy.integration.FAULT["before"] = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        lib.Model().fit([1])


def test_a_repeating_failure_warns_once(toy, contained_errors, caplog):
    lib = toy.import_lib()
    enable()
    toy.integration.FAULT["after"] = RuntimeError("broken every step")
    with caplog.at_level(logging.WARNING, logger="autolog"):
        for _ in range(20):
            lib.Scaler().fit([1])  # one patched place failing at every call
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and "broken every step" in r.getMessage()]
    assert len(warnings) == 1
    assert len(contained_errors) == 20  # counted every time, shown once


def test_a_wrapper_kept_after_disable_calls_the_original(toy):
    lib = toy.import_lib()
    enable()
    kept = lib.Model.fit  # e.g. a bound reference held by user code
    autolog.autolog(disable=True)
    model = lib.Model()
    assert kept(model, [1, 2]) is model
    assert toy_runs() == []


def test_threads_training_at_once_get_separate_runs(toy):
    lib = toy.import_lib()
    enable()
    lib.BARRIER = threading.Barrier(4)  # all four fits are inside the wrapper at once
    errors = []

    def train(n):
        try:
            lib.Model().fit(list(range(n)))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=train, args=(n,)) for n in (1, 2, 3, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    lib.BARRIER = None
    assert errors == []
    runs = toy_runs()
    assert len(runs) == 4
    assert sorted(r.params["n_rows"] for r in runs) == ["1", "2", "3", "4"]
    assert all(r.status == "FINISHED" and r.parent_run_id is None for r in runs)


def test_an_unknown_integration_is_an_error(toy):
    with pytest.raises(ValueError, match="unknown integration"):
        autolog.autolog(integrations=["no-such-library"])


def test_an_unsupported_version_is_skipped_or_refused(toy, monkeypatch, contained_errors, caplog):
    integ = toy.integration
    monkeypatch.setattr(integ.ToyIntegration, "requires", "pytest>=999")
    with pytest.raises(RuntimeError, match="supports pytest>=999"):
        autolog.autolog(integrations=["toy"])  # named explicitly: an error
    with caplog.at_level(logging.WARNING, logger="autolog"):
        assert "toy" not in autolog.autolog()  # not named: skipped with a warning
    assert any("pytest>=999" in r.getMessage() for r in caplog.records)


def test_a_patch_that_fails_half_way_is_undone(toy, monkeypatch, contained_errors):
    lib = toy.import_lib()
    before = snapshot(lib.Model, lib.Scaler, lib)
    integ = toy.integration

    def half_patch(self, patcher):
        patcher.wrap(lib, "Model.fit", integ.fit_wrapper)
        patcher.wrap(lib, "Model.no_such_method", integ.passthrough)

    monkeypatch.setattr(integ.ToyIntegration, "patch", half_patch)
    enable()
    assert same_objects(before, snapshot(lib.Model, lib.Scaler, lib)) == [True, True, True]
    assert [type(e) for _, e in contained_errors] == [AttributeError]


@pytest.mark.parametrize("first", ["lower", "upper"])
def test_two_patchers_on_one_attribute_restore_it_in_either_order(first):
    """sklearn and xgboost both wrap XGBModel.fit: whichever patcher is reverted first, the
    attribute ends as the very object it was (own or inherited), and calls go through once."""
    from autolog.instrument.patching import Patcher

    class Base:
        def fit(self):
            return "base"

    class Own(Base):
        def fit(self):
            self.calls = getattr(self, "calls", 0) + 1
            return "own"

    class Inherits(Base):
        pass

    before = {cls: dict(vars(cls)) for cls in (Base, Own, Inherits)}

    def passthrough(wrapped, instance, args, kwargs):
        return wrapped(*args, **kwargs)

    lower, upper = Patcher("lower"), Patcher("upper")
    for patcher in (lower, upper):
        patcher.wrap(Own, "fit", passthrough)
        patcher.wrap(Inherits, "fit", passthrough)
    model = Own()
    assert model.fit() == "own" and model.calls == 1 and Inherits().fit() == "base"

    (lower if first == "lower" else upper).revert()
    assert model.fit() == "own" and model.calls == 2 and Inherits().fit() == "base"
    (upper if first == "lower" else lower).revert()
    for cls, namespace in before.items():
        assert vars(cls).keys() == namespace.keys(), cls
        assert all(vars(cls)[name] is value for name, value in namespace.items()), cls
