"""The training-call wrapper (autolog/instrument/training_call.py) and `autolog.child_run`.

A small model class defined here is patched through a real `Patcher` (the engine's
safety layer included), with `TrainingWrapper` subclasses whose hooks record what they
saw or fail on purpose. The checks are the wrapper's promises: hooks contained, the
original called exactly once, the user's exception unchanged, the user's arguments when
`before` fails, replaced arguments reaching the original without touching the user's
objects, one run for a fit inside a fit (across integrations), and the run choice.
"""

from __future__ import annotations

import threading

import pytest

import autolog
from autolog.instrument.patching import Patcher
from autolog.instrument.snapshots import TrainingActivity
from autolog.instrument.training_call import Call, TrainingWrapper, call_arguments, peeked, with_argument

ERROR = ValueError("bad training data")


class Model:
    def __init__(self):
        self.calls = []
        self.inner = None

    def fit(self, X, y=None, *, epochs=1, callbacks=None, fail=False, **options):
        self.calls.append({"X": X, "y": y, "epochs": epochs, "callbacks": callbacks, "options": options})
        if fail:
            raise ERROR
        if self.inner is not None:
            self.inner.fit(X)  # a fit inside a fit
        return self

    @classmethod
    def build(cls, size, *extra):
        model = cls()
        model.size = size
        return model


class Other:
    """A second library's model, wrapped by a second integration."""

    def train(self, data):
        return len(data)


class Recording(TrainingWrapper):
    """Records each hook's view of the call; `faults` makes a hook raise."""

    integration = "toy"

    def __init__(self, faults=None, **kwargs):
        super().__init__(**kwargs)
        self.faults = faults or {}
        self.seen = []

    def _maybe_fail(self, hook):
        if hook in self.faults:
            raise self.faults[hook]

    def before(self, call):
        self.seen.append(("before", call.run.run_id, dict(call.arguments)))
        call.run.log_param("epochs", call.arguments.get("epochs", 1))
        call.state["started"] = True
        self._maybe_fail("before")

    def after(self, call):
        self.seen.append(("after", call.state.get("started"), call.result))
        call.run.log_metric("done", 1)
        self._maybe_fail("after")

    def failed(self, call, exc):
        self.seen.append(("failed", exc))
        self._maybe_fail("failed")


@pytest.fixture
def patch():
    """`patch(owner, path, wrapper)` through a real Patcher, reverted after the test."""
    patchers = []

    def apply(owner, path, wrapper, integration="toy"):
        patcher = Patcher(integration)
        patcher.wrap(owner, path, wrapper)
        patchers.append(patcher)
        return wrapper

    yield apply
    for patcher in patchers:
        patcher.revert()


def toy_runs():
    autolog.flush()
    try:
        return autolog.search_runs(output_format="list")
    except Exception:  # noqa: BLE001 - no store yet: nothing was logged
        return []


def only_run():
    found = toy_runs()
    assert len(found) == 1, [r.run_name for r in found]
    return found[0]


# -- hooks, the original, the result ----------------------------------------------------------
def test_a_logged_call_runs_before_the_original_once_then_after():
    wrapper = Recording()
    model = Model()
    with_patch = Patcher("toy")
    with_patch.wrap(Model, "fit", wrapper)
    try:
        assert model.fit([1, 2], [0, 1], epochs=3) is model
    finally:
        with_patch.revert()
    assert len(model.calls) == 1
    run = only_run()
    assert run.status == "FINISHED" and run.run_name.startswith("Model-")
    assert run.tags["autolog.integration"] == "toy"
    assert run.params == {"epochs": "3"} and run.metrics["done"] == 1.0
    (_, run_id, arguments), after = wrapper.seen
    assert run_id == run.run_id
    assert arguments == {"X": [1, 2], "y": [0, 1], "epochs": 3}  # no self, no defaults: bind_defaults is off
    assert after == ("after", True, model)


def test_before_failing_is_contained_and_the_original_gets_the_users_own_arguments(patch, contained_errors):
    class Replacing(Recording):
        def before(self, call):
            call.kwargs = {**call.kwargs, "epochs": 99}  # replaced, then the hook fails
            call.args = ("not the user's data",)
            raise RuntimeError("integration bug before")

    wrapper = patch(Model, "fit", Replacing())
    model = Model()
    user_kwargs = {"epochs": 2}
    assert model.fit([1, 2, 3], **user_kwargs) is model
    assert [(c["X"], c["epochs"]) for c in model.calls] == [([1, 2, 3], 2)]  # once, with the user's arguments
    assert [w for w, _ in contained_errors] == ["toy: before Model.fit"]
    run = only_run()
    assert run.status == "FINISHED" and run.metrics["done"] == 1.0  # after still ran
    assert wrapper.seen[-1][0] == "after"


def test_after_failing_is_contained_and_the_users_result_is_returned(patch, contained_errors):
    patch(Model, "fit", Recording(faults={"after": RuntimeError("integration bug after")}))
    model = Model()
    assert model.fit([1]) is model
    assert len(model.calls) == 1
    assert [(w, str(e)) for w, e in contained_errors] == [("toy: after Model.fit", "integration bug after")]
    assert only_run().status == "FINISHED"


def test_after_cannot_change_what_the_caller_gets(patch):
    class Meddling(TrainingWrapper):
        integration = "toy"

        def after(self, call):
            call.result = "something else"

    patch(Model, "fit", Meddling())
    model = Model()
    assert model.fit([1]) is model


def test_the_users_exception_passes_unchanged_after_the_failed_hook(patch, contained_errors):
    wrapper = patch(Model, "fit", Recording(faults={"failed": RuntimeError("integration bug in failed")}))
    model = Model()
    with pytest.raises(ValueError) as excinfo:
        model.fit([1], fail=True)
    assert excinfo.value is ERROR
    assert len(model.calls) == 1
    assert ("failed", ERROR) in wrapper.seen and not any(s[0] == "after" for s in wrapper.seen)
    assert [w for w, _ in contained_errors] == ["toy: failed Model.fit"]
    run = only_run()
    assert run.status == "FAILED" and run.tags["autolog.error"] == "ValueError: bad training data"


def test_a_keyboard_interrupt_in_training_kills_the_run_and_passes_through(patch):
    class Interrupted(Model):
        def fit(self, X):
            raise KeyboardInterrupt

    patch(Interrupted, "fit", Recording())
    with pytest.raises(KeyboardInterrupt):
        Interrupted().fit([1])
    assert only_run().status == "KILLED"


def test_replaced_arguments_reach_the_original_and_the_users_objects_are_untouched(patch):
    class AddsACallback(TrainingWrapper):
        integration = "toy"

        def before(self, call):
            callbacks = list(call.arguments.get("callbacks") or [])
            call.kwargs = {**call.kwargs, "callbacks": callbacks + ["autolog's"]}

        def after(self, call):
            call.state["bound"] = call.arguments["callbacks"]  # bound again from the replaced kwargs
            call.run.log_param("callbacks_seen", len(call.state["bound"]))

    patch(Model, "fit", AddsACallback())
    model = Model()
    users_callbacks = ["user's"]
    users_kwargs = {"callbacks": users_callbacks}
    model.fit([1], **users_kwargs)
    assert model.calls[0]["callbacks"] == ["user's", "autolog's"]
    assert users_callbacks == ["user's"] and users_kwargs == {"callbacks": ["user's"]}
    assert only_run().params["callbacks_seen"] == "2"


def test_a_before_hook_that_mutates_the_kwargs_dict_it_was_given_leaves_the_callers_alone(patch, contained_errors):
    class Mutating(TrainingWrapper):
        integration = "toy"

        def before(self, call):
            call.kwargs["epochs"] = 50  # against the rule, then fails: the user's call is what runs
            raise RuntimeError("half done")

    patch(Model, "fit", Mutating())
    model = Model()
    options = {"epochs": 5}
    model.fit([1], **options)
    assert model.calls[0]["epochs"] == 5 and options == {"epochs": 5}
    assert len(contained_errors) == 1


# -- which calls log ------------------------------------------------------------------------
def test_a_fit_inside_a_fit_is_logged_once_at_the_outermost_call(patch):
    outer = patch(Model, "fit", Recording())
    model, inner = Model(), Model()
    model.inner = inner
    model.fit([1, 2])
    assert len(inner.calls) == 1
    assert len(toy_runs()) == 1
    assert [s[0] for s in outer.seen] == ["before", "after"]  # the inner fit ran no hooks


def test_a_training_call_of_another_integration_inside_is_not_logged_either(patch):
    class OtherWrapper(TrainingWrapper):
        integration = "other"

        def after(self, call):
            call.run.set_tag("logged_by", "other")

    patch(Other, "train", OtherWrapper(), integration="other")

    class Composite(TrainingWrapper):
        integration = "toy"

    class Ensemble(Model):
        def fit(self, X):
            Other().train(X)
            return self

    patch(Ensemble, "fit", Composite())
    Ensemble().fit([1, 2, 3])
    run = only_run()
    assert run.tags["autolog.integration"] == "toy" and "logged_by" not in run.tags
    assert Other().train([1]) == 1  # on its own, the other library's call is a run of its own
    assert len(toy_runs()) == 2


def test_should_log_false_runs_the_original_untouched(patch):
    class Picky(Recording):
        def should_log(self, call):
            return call.arguments["X"] != "internal"

        def before(self, call):
            call.args = ("replaced",)

    wrapper = patch(Model, "fit", Picky())
    model = Model()
    model.fit("internal")
    assert model.calls[0]["X"] == "internal" and toy_runs() == [] and wrapper.seen == []


def test_should_log_and_run_name_failing_are_contained(patch, contained_errors):
    class BadDecision(TrainingWrapper):
        integration = "toy"

        def should_log(self, call):
            raise RuntimeError("cannot decide")

    class BadName(TrainingWrapper):
        integration = "toy"

        def run_name(self, call):
            raise RuntimeError("no name")

        def run_tags(self, call):
            raise RuntimeError("no tags")

    class Named(Model):
        pass

    patch(Model, "fit", BadDecision())
    patch(Named, "fit", BadName())
    model = Model().fit([1])
    assert len(model.calls) == 1 and toy_runs() == []
    Named().fit([2])
    assert only_run().run_name.startswith("Named-")  # the default name
    assert sorted(w for w, _ in contained_errors) == ["toy: run_name Named.fit", "toy: run_tags Named.fit",
                                                     "toy: should_log Model.fit"]


def test_run_name_and_tags_of_an_autolog_made_run(patch):
    class Named(TrainingWrapper):
        integration = "toy"

        def run_name(self, call):
            return f"model-{len(call.arguments['X'])}"

        def run_tags(self, call):
            return {"toy.kind": "regression"}

    patch(Model, "fit", Named())
    Model().fit([1, 2, 3])
    run = only_run()
    assert run.run_name.startswith("model-3-") and run.tags["toy.kind"] == "regression"


def test_the_users_active_run_gets_the_first_call_and_stays_open(patch):
    patch(Model, "fit", Recording())
    with autolog.start_run(run_name="mine") as mine:
        Model().fit([1], epochs=4)
        assert autolog.active_run() is mine
        Model().fit([1], epochs=5)  # the second training call in it: a child run
    found = {r.run_name: r for r in toy_runs()}
    assert found["mine"].params == {"epochs": "4"}
    (child,) = [r for name, r in found.items() if name != "mine"]
    assert child.parent_run_id == mine.run_id and child.params == {"epochs": "5"}


def test_exclusive_leaves_the_users_run_alone(patch):
    patch(Model, "fit", Recording())
    autolog.autolog(integrations=[], exclusive=True)
    with autolog.start_run(run_name="mine"):
        model = Model().fit([1])
    assert len(model.calls) == 1
    assert [r.params for r in toy_runs()] == [{}]


def test_threads_each_get_their_own_run(patch):
    patch(Model, "fit", Recording())
    barrier = threading.Barrier(3)

    class Waiting(Model):
        def fit(self, X, **kwargs):
            barrier.wait(30)
            return super().fit(X, **kwargs)

    threads = [threading.Thread(target=lambda n=n: Waiting().fit(list(range(n)), epochs=n)) for n in (1, 2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    found = toy_runs()
    assert sorted(r.params["epochs"] for r in found) == ["1", "2", "3"]
    assert all(r.parent_run_id is None and r.status == "FINISHED" for r in found)


def test_the_activity_is_busy_while_a_logged_call_runs(patch):
    activity = TrainingActivity()
    seen = []

    class Busy(TrainingWrapper):
        integration = "toy"

        def before(self, call):
            seen.append(activity._busy)

    Busy.activity = activity

    class Watched(Model):
        def fit(self, X):
            seen.append(activity._busy)
            return self

    patch(Watched, "fit", Busy())
    Watched().fit([1])
    assert seen == [1, 1] and activity._busy == 0


# -- arguments ------------------------------------------------------------------------------
def test_arguments_with_defaults_through_the_class_and_for_a_classmethod(patch):
    seen = []

    class Defaults(TrainingWrapper):
        integration = "toy"
        bind_defaults = True

        def before(self, call):
            seen.append(call.arguments)

    patch(Model, "fit", Defaults())
    patch(Model, "build", Defaults())
    model = Model()
    Model.fit(model, [1], seed=7)  # through the class: wrapt hands over a partial with the instance
    Model.build(4, "extra")
    assert seen[0] == {"X": [1], "y": None, "epochs": 1, "callbacks": None, "fail": False, "seed": 7}
    assert seen[1] == {"size": 4}  # cls and *args left out


def test_call_arguments_of_a_call_that_does_not_fit_raise_type_error():
    model = Model()
    with pytest.raises(TypeError):
        call_arguments(model.fit, ([1],), {"X": [2]})  # X twice
    call = Call(model.fit, model, ([1], [0], "too many"), {})
    with pytest.raises(TypeError):
        call.arguments
    assert call_arguments(model.fit, ([1],), {"seed": 3}) == {"X": [1], "seed": 3}


def test_with_argument_replaces_a_positional_or_keyword_argument_without_touching_the_users(patch):
    model = Model()
    ours = ["autolog's callback"]
    args, kwargs = ([1], [0], 3), {"epochs": 2}  # callbacks is keyword-only: added as a keyword
    assert with_argument(model.fit, args, kwargs, "callbacks", ours) == (([1], [0], 3), {"epochs": 2, "callbacks": ours})
    assert kwargs == {"epochs": 2}
    assert with_argument(model.fit, ([1], [0]), {}, "y", "new") == (([1], "new"), {})  # in its place
    assert with_argument(model.fit, ([1],), {}, "y", "new") == (([1],), {"y": "new"})  # not passed: a keyword
    assert with_argument(Model.build, (4, "extra"), {}, "size", 5) == ((5, "extra"), {})  # a classmethod
    assert with_argument(len, ([1],), {}, "obj", [2]) == (([2],), {})  # positional-only

    seen = []

    class Replacing(TrainingWrapper):
        integration = "toy"

        def before(self, call):
            call.set_argument("y", "replaced")
            seen.append((call.args, call.arguments["y"]))

    patch(Model, "fit", Replacing())
    Model.fit(model, [1], [0])  # through the class: wrapt's partial holds the instance
    model.fit([2], [0])
    assert [c["y"] for c in model.calls] == ["replaced", "replaced"]
    assert seen == [(([1], "replaced"), "replaced"), (([2], "replaced"), "replaced")]


def test_peek_argument_reads_the_first_batch_and_the_original_gets_every_batch(patch):
    seen = []

    class Peeking(TrainingWrapper):
        integration = "toy"

        def before(self, call):
            seen.append(call.peek_argument("X"))

    patch(Model, "fit", Peeking())
    model = Model()
    model.fit(iter([[1, 2], [3, 4]]))
    Model.fit(model, X=(batch for batch in [[5]]))
    assert seen == [([1, 2],), ([5],)]
    assert [list(c["X"]) for c in model.calls] == [[[1, 2], [3, 4]], [[5]]]


def test_peeked_of_an_empty_or_failing_iterator():
    first, replay = peeked(iter([]))
    assert first is None and list(replay) == []

    def failing():
        raise ERROR
        yield  # a generator

    first, replay = peeked(failing())
    assert first is None
    with pytest.raises(ValueError) as raised:
        next(replay)
    assert raised.value is ERROR  # the user's own exception, where the library reads the data
    first, replay = peeked(iter([None, 0]))
    assert first == (None,) and list(replay) == [None, 0]


def test_call_arguments_of_a_callable_without_a_signature_are_its_keywords():
    class NoSignature:
        __signature__ = "not a signature"  # inspect.signature raises TypeError on it

        def __call__(self, *args, **kwargs):
            return None

    assert call_arguments(NoSignature(), (1,), {"key": 1}) == {"key": 1}


def test_a_wrong_call_raises_the_users_type_error_and_the_run_fails(patch):
    patch(Model, "fit", Recording())
    with pytest.raises(TypeError):
        Model().fit()  # X missing: bind_partial binds, the original raises
    assert only_run().status == "FAILED"


def test_a_wrapper_needs_an_integration_name():
    with pytest.raises(ValueError, match="integration name"):
        TrainingWrapper()
    assert TrainingWrapper("mine").integration == "mine"


# -- child_run ------------------------------------------------------------------------------
def test_child_run_is_active_inside_and_finished_after():
    with autolog.start_run(run_name="parent") as parent:
        with autolog.child_run("fold-1", tags={"fold": 1}) as child:
            assert autolog.active_run() is child
            autolog.log_metric("score", 0.5)
        assert autolog.active_run() is parent
    stored = autolog.get_run(child.run_id)
    assert stored.parent_run_id == parent.run_id and stored.run_name == "fold-1"
    assert stored.status == "FINISHED" and stored.tags["fold"] == "1" and stored.metrics == {"score": 0.5}
    assert "autolog.run_owner" not in stored.tags  # the user's child run


def test_child_run_fails_with_the_block_and_the_exception_passes():
    with autolog.start_run() as parent:
        with pytest.raises(ValueError) as excinfo:
            with autolog.child_run("bad") as child:
                raise ERROR
        assert excinfo.value is ERROR
        assert autolog.active_run() is parent
    stored = autolog.get_run(child.run_id)
    assert stored.status == "FAILED" and stored.tags["autolog.error"] == "ValueError: bad training data"
    assert autolog.get_run(parent.run_id).status == "FINISHED"


def test_child_run_of_an_explicit_parent_and_a_fit_inside_it_logs_into_it(patch):
    patch(Model, "fit", Recording())
    with autolog.start_run(run_name="sweep") as sweep:
        with autolog.child_run("a"):
            with autolog.child_run("b", parent=sweep) as b:  # a sibling of "a", not its child
                Model().fit([1], epochs=8)
    stored = autolog.get_run(b.run_id)
    assert stored.parent_run_id == sweep.run_id and stored.params == {"epochs": "8"}
    assert len(toy_runs()) == 3


def test_child_run_without_any_run_is_a_run_of_its_own_and_an_ended_parent_is_refused():
    with autolog.child_run("alone") as run:
        pass
    assert autolog.get_run(run.run_id).parent_run_id is None
    with pytest.raises(ValueError, match="has ended"):
        with autolog.child_run("late", parent=run):
            pass


def test_child_runs_made_inside_a_training_call_are_autologs(patch):
    class Search(TrainingWrapper):
        integration = "toy"

        def after(self, call):
            for index in range(2):
                with autolog.child_run(f"candidate-{index}", tags={"index": index}) as child:
                    child.log_param("index", index)

    patch(Model, "fit", Search())
    Model().fit([1])
    found = toy_runs()
    (parent,) = [r for r in found if r.parent_run_id is None]
    children = [r for r in found if r.parent_run_id == parent.run_id]
    assert sorted(r.params["index"] for r in children) == ["0", "1"]
    assert all(r.tags["autolog.run_owner"] == "autolog" and r.status == "FINISHED" for r in children)
    assert parent.status == "FINISHED"


# -- a run that starts later than the call ----------------------------------------------------
class StartsLater(TrainingWrapper):
    """The run starts when the model calls `start_run` (as a Lightning callback's setup does)."""

    integration = "toy"

    def __init__(self):
        super().__init__()
        self.seen = []

    def starts_run_later(self, call):
        return True

    def before(self, call):
        self.seen.append(("before", call.run))
        call.args = (call.start_run,) + call.args[1:]  # the model is handed the starter

    def started(self, call):
        self.seen.append(("started", call.run.run_id))
        call.run.log_param("started", True)

    def after(self, call):
        self.seen.append(("after", call.run and call.run.run_id))


class LateModel(Model):
    def fit(self, start_run, fail=False, elsewhere=False):
        from autolog.runs.training import training_call_in_progress

        self.guarded_before = training_call_in_progress() is not None  # a fit inside logs nothing
        if elsewhere:
            found = []
            thread = threading.Thread(target=lambda: found.append(start_run()))
            thread.start()
            thread.join()
            self.run = found[0]
        else:
            self.run = start_run()
            assert start_run() is self.run  # once
            self.active = autolog.active_run()
        if fail:
            raise ERROR
        return self


def test_a_run_that_starts_later_starts_at_start_run_and_ends_with_the_call(patch):
    wrapper = patch(LateModel, "fit", StartsLater())
    model = LateModel().fit(None)
    run = only_run()
    assert run.status == "FINISHED" and run.params == {"started": "True"}
    assert model.guarded_before and model.run.run_id == run.run_id and model.active is model.run
    assert wrapper.seen == [("before", None), ("started", run.run_id), ("after", run.run_id)]
    assert autolog.active_run() is None

    with pytest.raises(ValueError) as raised:
        LateModel().fit(None, fail=True)
    assert raised.value is ERROR
    assert sorted(r.status for r in toy_runs()) == ["FAILED", "FINISHED"]


def test_a_run_that_starts_later_is_not_started_from_another_thread_and_nothing_is_logged(patch):
    wrapper = patch(LateModel, "fit", StartsLater())
    model = LateModel().fit(None, elsewhere=True)
    assert model.run is None and toy_runs() == []
    assert wrapper.seen == [("before", None), ("after", None)]
    from autolog.runs.training import training_call_in_progress

    assert training_call_in_progress() is None  # the guard is released with the call


def test_a_flush_does_not_wait_for_training_to_pause():
    """While someone waits in autolog.flush(), the worker's post-fit work does not wait for the
    quiet time after a fit (nor for a fit in another thread to end): the caller waits for it."""
    import threading
    import time

    from autolog.instrument.snapshots import TrainingActivity, flushing

    activity = TrainingActivity(quiet_s=30.0, max_wait_s=30.0)
    with activity:
        pass  # a fit just ended: wait() would hold the work for quiet_s
    returned = threading.Event()
    waiter = threading.Thread(target=lambda: (activity.wait(), returned.set()))
    waiter.start()
    assert not returned.wait(0.3)  # quiet time: it waits
    with flushing():
        assert returned.wait(10)  # woken by the flush, not by the 30 s
    waiter.join()
    with activity:  # a fit in progress, and a flush: no wait either
        with flushing():
            started = time.monotonic()
            activity.wait()
            assert time.monotonic() - started < 10
