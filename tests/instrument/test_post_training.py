"""After training (autolog/instrument/post_training.py): `TrainedModels` remembers which run
trained which model, `AfterTraining` logs an evaluation after `fit` into that run.

A small model class is patched through a real `Patcher`: a `TrainingWrapper` on `fit` remembers
the run, an `AfterTraining` on `evaluate` logs into it. The checks are the promises: the
evaluation of a model autolog trained logs into the training run, once ended too, with a step
counted on per evaluation; any other call (a model not trained under autolog, a call inside a
training call, one whose `run_of` fails) runs untouched; the original runs once, its result
and its own exception reach the caller unchanged; the evaluation counts as a training call.
"""

from __future__ import annotations

import gc

import pytest

import autolog
from autolog.instrument.patching import Patcher
from autolog.instrument.post_training import AfterTraining, TrainedModels
from autolog.instrument.training_call import TrainingWrapper
from autolog.runs.training import training_call_in_progress

ERROR = ValueError("bad evaluation data")


class Model:
    def __init__(self):
        self.evaluations = []
        self.inner = None

    def fit(self, X):
        return self

    def evaluate(self, X, callbacks=None, fail=False):
        self.evaluations.append((X, callbacks, training_call_in_progress() is not None))
        if fail:
            raise ERROR
        if self.inner is not None:
            self.inner.fit(X)  # a training call inside the evaluation
        return len(X)


class Fit(TrainingWrapper):
    integration = "toy"

    def __init__(self, trained):
        super().__init__()
        self.trained = trained

    def after(self, call):
        self.trained.remember(call.instance, call.run, next_step=3)


class Evaluate(AfterTraining):
    integration = "toy"

    def __init__(self, trained, fail_in=None):
        super().__init__()
        self.trained = trained
        self.fail_in = fail_in
        self.seen = []

    def run_of(self, call):
        if self.fail_in == "run_of":
            raise RuntimeError("run_of failed")
        target = self.trained.next_step(call.instance)
        if target is None:
            return None
        run, call.state["step"] = target
        return run

    def before(self, call):
        call.set_argument("callbacks", ["ours"])

    def after(self, call):
        self.seen.append(("after", call.result))
        call.run.log_metric("validation_score", call.result, step=call.state["step"])

    def failed(self, call, exc):
        self.seen.append(("failed", exc))


@pytest.fixture
def patched():
    trained = TrainedModels()
    evaluate = Evaluate(trained)
    patcher = Patcher("toy")
    patcher.wrap(Model, "fit", Fit(trained))
    patcher.wrap(Model, "evaluate", evaluate)
    yield evaluate
    patcher.revert()


def metric_history(run_id, key):
    from autolog import runs

    return [(m.step, m.value) for m in runs._reader().get_metric_history(run_id, key)]


def test_an_evaluation_after_fit_logs_into_the_ended_training_run_step_by_step(patched):
    model = Model().fit([1, 2])
    (run,) = autolog.search_runs(output_format="list")
    assert model.evaluate([1, 2, 3]) == 3
    assert model.evaluate([1]) == 1
    assert autolog.flush(60)
    assert metric_history(run.run_id, "validation_score") == [(3, 3.0), (4, 1.0)]
    # the user's callbacks argument untouched, the original got ours; inside, a training call
    assert model.evaluations == [([1, 2, 3], ["ours"], True), ([1], ["ours"], True)]
    assert len(autolog.search_runs(output_format="list")) == 1


class Pipeline:
    def __init__(self, model):
        self.model = model

    def fit(self, X):
        return self.model.evaluate(X)  # an evaluation inside a training call


def test_other_calls_run_untouched(patched, contained_errors):
    assert Model().evaluate([1]) == 1  # not trained under autolog: no run
    model = Model().fit([1])
    patcher = Patcher("toy2")
    patcher.wrap(Pipeline, "fit", Fit(TrainedModels()))
    try:
        assert Pipeline(model).fit([1, 2, 3]) == 3
    finally:
        patcher.revert()
    assert model.evaluations[-1] == ([1, 2, 3], None, True)  # the pipeline's run logs, not this
    patched.fail_in = "run_of"
    assert model.evaluate([1, 2]) == 2  # run_of failed: untouched, reported once
    assert model.evaluations[-1] == ([1, 2], None, False)
    assert [where for where, _ in contained_errors] == ["toy: run_of Model.evaluate"]
    assert patched.seen == []


def test_the_users_exception_and_the_result_pass_unchanged(patched):
    model = Model().fit([1])
    with pytest.raises(ValueError) as raised:
        model.evaluate([1], fail=True)
    assert raised.value is ERROR
    assert patched.seen == [("failed", ERROR)]
    assert len(model.evaluations) == 1  # the original ran once


def test_a_training_call_inside_the_evaluation_logs_nothing_of_its_own(patched):
    model = Model().fit([1])
    model.inner = Model()
    model.evaluate([1])
    assert len(autolog.search_runs(output_format="list")) == 1


def test_trained_models_are_held_weakly_and_unhashable_ones_are_not_remembered():
    trained = TrainedModels()
    model, run = Model(), object()
    assert trained.run_of(model) is None and trained.next_step(model) is None
    trained.remember(model, run, next_step=5)
    assert trained.run_of(model) is run
    assert trained.next_step(model) == (run, 5) and trained.next_step(model) == (run, 6)
    trained.remember([], run)  # a list: unhashable, not weak-referenceable
    assert trained.run_of([]) is None
    del model
    gc.collect()
    assert len(trained._models) == 0
    trained.remember(Model(), run)
    trained.clear()
    assert trained.run_of(Model()) is None
