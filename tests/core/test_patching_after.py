"""`Patcher.after`: the engine's hook after a call, for the hot paths (every backward(), every
optimizer step). The same promises as `wrap`: the user's result and exception untouched, an
error of the hook contained and reported once, identity restored on revert (own and inherited
attributes), skipped once reverted and on the logger's worker thread, introspectable."""

from __future__ import annotations

import inspect
import threading

import pytest

from autolog.instrument.patching import Patcher
from autolog.transport import logger as logger_module


class Base:
    def step(self, x, *, scale=1):
        """Take a step."""
        if x == "boom":
            raise ValueError("the user's own error")
        return x * scale


class Child(Base):
    pass


class Own(Base):
    def step(self, x, *, scale=1):
        return ("own", x * scale)

    @classmethod
    def make(cls, n):
        return (cls, n)


def module_function(a, b=2):
    return a + b


class Seen:
    def __init__(self):
        self.calls = []

    def __call__(self, instance, args, kwargs, result):
        self.calls.append((instance, args, kwargs, result))


def test_the_hook_sees_the_instance_arguments_and_result():
    seen = Seen()
    patcher = Patcher("test")
    assert patcher.after(Base, "step", seen) is True
    try:
        model = Base()
        assert model.step(3, scale=2) == 6
        assert Base.step(model, 4) == 4  # called through the class: the instance is still apart
        assert seen.calls == [(model, (3,), {"scale": 2}, 6), (model, (4,), {}, 4)]
    finally:
        patcher.revert()


def test_identity_is_restored_for_own_and_inherited_attributes():
    before = {cls: dict(vars(cls)) for cls in (Base, Child, Own)}
    patcher = Patcher("test")
    for cls in (Base, Child, Own):
        assert patcher.after(cls, "step", Seen())
    assert "step" in vars(Child)  # the inherited method got a hook of its own on Child
    assert Child().step(2) == 2 and Own().step(2) == ("own", 2)
    patcher.revert()
    for cls, namespace in before.items():
        assert vars(cls).keys() == namespace.keys(), cls
        assert all(vars(cls)[name] is value for name, value in namespace.items()), cls


def test_the_users_exception_passes_unchanged_and_the_hook_does_not_run():
    seen = Seen()
    patcher = Patcher("test")
    patcher.after(Base, "step", seen)
    try:
        with pytest.raises(ValueError, match="the user's own error"):
            Base().step("boom")
        assert seen.calls == []
    finally:
        patcher.revert()


def test_a_failing_hook_is_contained_and_the_result_stands(contained_errors):
    def broken(instance, args, kwargs, result):
        raise RuntimeError("autolog bug")

    patcher = Patcher("test")
    patcher.after(Base, "step", broken)
    try:
        assert [Base().step(i) for i in range(3)] == [0, 1, 2]
    finally:
        patcher.revert()
    assert [(where, type(exc)) for where, exc in contained_errors] == [("test: Base.step", RuntimeError)] * 3


def test_a_hook_kept_after_revert_and_the_worker_thread_call_straight_through():
    seen = Seen()
    patcher = Patcher("test")
    patcher.after(Base, "step", seen)
    kept = Base().step  # a bound method taken while patched
    on_worker = []

    def worker():
        logger_module.worker_thread_local.is_worker = True
        on_worker.append(Base().step(5))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert on_worker == [5] and seen.calls == []
    patcher.revert()
    assert kept(7) == 7 and seen.calls == []


def test_introspection_is_the_originals():
    signature = inspect.signature(Base.step)
    patcher = Patcher("test")
    patcher.after(Base, "step", Seen())
    try:
        assert inspect.signature(Base.step) == signature
        assert Base.step.__name__ == "step" and Base.step.__doc__ == "Take a step."
        assert Base.step.__wrapped__ is vars(Base)["step"].__wrapped__
    finally:
        patcher.revert()


def test_a_module_function_and_a_classmethod():
    import types

    module = types.ModuleType("toy_after_module")
    module.function = module_function
    seen_function, seen_method = Seen(), Seen()
    original_make = vars(Own)["make"]
    patcher = Patcher("test")
    patcher.after(module, "function", seen_function)
    patcher.after(Own, "make", seen_method)  # not a plain function: through `wrap`
    try:
        assert module.function(1) == 3
        assert Own.make(4) == (Own, 4)
        assert seen_function.calls == [(None, (1,), {}, 3)]
        assert seen_method.calls == [(Own, (4,), {}, (Own, 4))]
    finally:
        patcher.revert()
    assert module.function is module_function and vars(Own)["make"] is original_make


def test_twice_on_one_attribute_patches_once_and_a_missing_attribute_is_an_error():
    seen = Seen()
    patcher = Patcher("test")
    assert patcher.after(Base, "step", seen) is True
    try:
        assert patcher.after(Base, "step", seen) is False
        Base().step(1)
        assert len(seen.calls) == 1
        with pytest.raises(AttributeError):
            patcher.after(Base, "no_such_method", seen)
    finally:
        patcher.revert()


@pytest.mark.parametrize("first", ["wrap", "after"])
def test_after_and_wrap_on_one_attribute_restore_it_in_either_order(first):
    before = dict(vars(Own))
    calls = []

    def passthrough(wrapped, instance, args, kwargs):
        calls.append("wrap")
        return wrapped(*args, **kwargs)

    wrapping, hooking = Patcher("wrapping"), Patcher("hooking")
    hooking.after(Own, "step", lambda *a: calls.append("after"))
    wrapping.wrap(Own, "step", passthrough)
    assert Own().step(1) == ("own", 1) and calls == ["wrap", "after"]
    (wrapping if first == "wrap" else hooking).revert()
    calls.clear()
    assert Own().step(2) == ("own", 2) and calls == (["after"] if first == "wrap" else ["wrap"])
    (hooking if first == "wrap" else wrapping).revert()
    assert vars(Own).keys() == before.keys() and all(vars(Own)[k] is v for k, v in before.items())
