"""Runs, read back from the real local store: experiments, nesting, statuses, training
calls and the runs they pick, resume, per-thread run context, handing a run to others."""

from __future__ import annotations

import sys
import threading

import pytest

import autolog
from autolog import runs
from autolog.backends.base import RunNotFound
from autolog.runs import TrainingCall


def history(run_id, key):
    autolog.flush()
    return runs.logger_for().backend.get_metric_history(run_id, key)


def test_start_run_defaults_and_status():
    with autolog.start_run() as run:
        assert autolog.active_run() is run
        assert len(run.run_id) == 32 and int(run.run_id, 16) >= 0
        run_id = run.run_id
    assert autolog.active_run() is None
    stored = autolog.get_run(run_id)
    assert stored.status == "FINISHED"
    assert stored.experiment_name == "Default"
    assert stored.run_name == run.run_name and run.run_name  # a generated name
    assert stored.end_time is not None and stored.end_time >= stored.start_time


def test_generated_run_names_leave_the_users_random_numbers_alone():
    import random

    from autolog.transport.logger import retry_delay

    random.seed(1234)
    expected = [random.random() for _ in range(3)]
    random.seed(1234)
    names = set()
    for _ in range(3):
        with autolog.start_run() as run:  # a generated name each
            names.add(run.run_name)
        retry_delay(3)  # a retry's jitter
    assert [random.random() for _ in range(3)] == expected  # a seeded script draws what it drew without autolog
    assert all(names) and len(names) >= 2


def test_experiments_group_runs():
    with autolog.start_run("a", experiment="exp-one"):
        pass
    with autolog.start_run("b", experiment="exp-two"):
        pass
    with autolog.start_run("c", experiment="exp-one"):
        pass
    assert sorted(r.run_name for r in autolog.search_runs("exp-one", output_format="list")) == ["a", "c"]
    assert [r.run_name for r in autolog.search_runs("exp-two", output_format="list")] == ["b"]
    assert len(autolog.search_runs(["exp-one", "exp-two"], output_format="list")) == 3
    assert sorted(e.name for e in runs.logger_for().backend.list_experiments()) >= ["exp-one", "exp-two"]


def test_nested_runs_carry_their_parent():
    with autolog.start_run("parent", experiment="nesting") as parent:
        with pytest.raises(RuntimeError, match="already active"):
            autolog.start_run("oops")
        with autolog.start_run("child", nested=True) as child:
            assert autolog.active_run() is child
            with autolog.start_run("grandchild", nested=True) as grandchild:
                pass
        assert autolog.active_run() is parent
    assert autolog.get_run(child.run_id).parent_run_id == parent.run_id
    assert autolog.get_run(grandchild.run_id).parent_run_id == child.run_id
    assert autolog.get_run(child.run_id).experiment_name == "nesting"  # children follow the parent
    assert [r.run_name for r in autolog.search_runs(parent_run_id=parent.run_id, output_format="list")] == ["child"]


def test_with_start_run_marks_failed_on_exception():
    with pytest.raises(ZeroDivisionError):
        with autolog.start_run() as run:
            1 / 0
    stored = autolog.get_run(run.run_id)
    assert stored.status == "FAILED"
    assert stored.tags["autolog.error"].startswith("ZeroDivisionError")


def test_keyboard_interrupt_marks_killed():
    with pytest.raises(KeyboardInterrupt):
        with autolog.start_run() as run:
            raise KeyboardInterrupt
    assert autolog.get_run(run.run_id).status == "KILLED"


def test_end_run_with_a_status_and_search_by_status():
    autolog.start_run("done")
    autolog.end_run()
    autolog.start_run("bad")
    autolog.end_run("failed")
    autolog.end_run()  # no active run: nothing happens
    assert [r.run_name for r in autolog.search_runs(status="FAILED", output_format="list")] == ["bad"]
    assert [r.run_name for r in autolog.search_runs(status="FINISHED", output_format="list")] == ["done"]
    with pytest.raises(ValueError):
        autolog.end_run("exploded")


def test_leaving_a_parent_ends_its_children():
    with autolog.start_run("p") as parent:
        child = autolog.start_run("c", nested=True)  # left open by mistake
    assert autolog.active_run() is None
    assert autolog.get_run(child.run_id).status == "FINISHED"
    assert autolog.get_run(parent.run_id).status == "FINISHED"


def test_a_training_call_without_a_run_gets_its_own():
    with TrainingCall("manual", "Estimator") as call:
        assert call.owns_run and autolog.active_run() is call.run
        call.run.log_metric("loss", 0.5)
    assert autolog.active_run() is None
    stored = autolog.get_run(call.run.run_id)
    assert stored.status == "FINISHED"
    assert stored.run_name.startswith("Estimator-")
    assert stored.tags["autolog.integration"] == "manual"
    assert stored.tags["autolog.run_owner"] == "autolog"
    assert stored.metrics == {"loss": 0.5}
    assert autolog.last_run().run_id == call.run.run_id


def test_a_training_call_that_raises_fails_its_run_and_reraises():
    error = ValueError("no convergence")
    with pytest.raises(ValueError) as excinfo:
        with TrainingCall("manual", "Estimator") as call:
            raise error
    assert excinfo.value is error
    stored = autolog.get_run(call.run.run_id)
    assert stored.status == "FAILED"
    assert stored.tags["autolog.error"] == "ValueError: no convergence"


def test_a_user_run_is_never_ended_by_autolog():
    with autolog.start_run("mine") as mine:
        with TrainingCall("manual", "First") as first:
            assert first.run is mine and not first.owns_run
        with TrainingCall("manual", "Second") as second:
            assert second.owns_run and second.run.parent_run_id == mine.run_id  # a child run
        assert autolog.active_run() is mine
        autolog.flush()
        assert autolog.get_run(mine.run_id).status == "RUNNING"
        assert autolog.get_run(second.run.run_id).status == "FINISHED"
    assert autolog.get_run(mine.run_id).status == "FINISHED"


def test_a_failing_training_call_in_a_user_run_leaves_the_run_running():
    with autolog.start_run("mine") as mine:
        with pytest.raises(RuntimeError):
            with TrainingCall("manual", "Model"):
                raise RuntimeError("boom")
        autolog.flush()
        assert autolog.get_run(mine.run_id).status == "RUNNING"


def test_exclusive_logs_nothing_inside_a_user_run():
    autolog.autolog(exclusive=True, integrations=[])
    with autolog.start_run():
        with TrainingCall("manual", "Model") as call:
            assert call.run is None
    with TrainingCall("manual", "Model") as outside:
        assert outside.run is not None  # no user run: a run of its own as usual


def test_nested_training_calls_log_once():
    with TrainingCall("outer-lib", "Pipeline") as outer:
        with TrainingCall("inner-lib", "Step") as inner:
            assert inner.run is None
            assert runs.training_call_in_progress() is outer
        with TrainingCall("inner-lib", "Step") as again:
            assert again.run is None
    assert runs.training_call_in_progress() is None
    assert len(autolog.search_runs(output_format="list")) == 1


def test_resume_a_run_by_id():
    with autolog.start_run("first") as run:
        autolog.log_param("lr", 0.1)
        autolog.log_metric("loss", 1.0, step=0)
    with autolog.start_run(run_id=run.run_id) as again:
        assert again.run_name == "first"
        autolog.log_metric("loss", 0.5, step=1)
        autolog.log_param("lr", 0.1)  # the same value again is fine
        with pytest.raises(ValueError, match="lr"):
            autolog.log_param("lr", 0.2)  # the old value is known after the resume
    stored = autolog.get_run(run.run_id)
    assert stored.status == "FINISHED"
    assert [(m.step, m.value) for m in history(run.run_id, "loss")] == [(0, 1.0), (1, 0.5)]


def test_resume_an_unknown_run_names_it():
    autolog.start_run("exists")  # the store exists
    autolog.end_run()
    with pytest.raises(RunNotFound, match="f" * 32):
        autolog.start_run(run_id="f" * 32)
    assert autolog.active_run() is None


def test_threads_with_their_own_runs_do_not_mix():
    barrier = threading.Barrier(2)
    ids = {}
    errors = []

    def work(name):
        try:
            with autolog.start_run(name) as run:
                ids[name] = run.run_id
                barrier.wait(30)  # both runs are active at the same time
                autolog.log_param(f"only_{name}", name)
                for step in range(50):
                    autolog.log_metric("value", float(len(name)), step=step)
                barrier.wait(30)
                assert autolog.active_run().run_id == run.run_id
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in ("a", "bbbb")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    a, b = autolog.get_run(ids["a"]), autolog.get_run(ids["bbbb"])
    assert a.params == {"only_a": "a"} and b.params == {"only_bbbb": "bbbb"}
    assert {m.value for m in history(a.run_id, "value")} == {1.0}
    assert {m.value for m in history(b.run_id, "value")} == {4.0}
    assert a.status == b.status == "FINISHED"
    assert autolog.active_run() is None


def test_a_helper_thread_logs_into_the_main_threads_run():
    with autolog.start_run() as run:
        def helper():
            autolog.log_metric("from_helper", 1.0)

        t = threading.Thread(target=helper)
        t.start()
        t.join(30)
    assert autolog.get_run(run.run_id).metrics == {"from_helper": 1.0}


def test_attach_logs_into_a_run_without_ending_it():
    with autolog.start_run("shared") as run:
        token = autolog.export_run_context()
        result = {}

        def worker():
            attached = autolog.attach(token)
            result["id"] = attached.run_id
            attached.log_metric("worker_metric", 2.0)
            attached.end()  # an attached run is never ended by the one who attached
            autolog.log_metric("via_api", 3.0)

        t = threading.Thread(target=worker)
        t.start()
        t.join(30)
        autolog.flush()
        assert result["id"] == run.run_id
        assert autolog.get_run(run.run_id).status == "RUNNING"
    stored = autolog.get_run(run.run_id)
    assert stored.status == "FINISHED"
    assert stored.metrics == {"worker_metric": 2.0, "via_api": 3.0}


def test_a_bad_token_is_a_clear_error():
    with pytest.raises(ValueError, match="not an autolog run context token"):
        autolog.attach("garbage")
    with pytest.raises(RuntimeError, match="no active run"):
        autolog.export_run_context()


def test_runs_left_active_end_at_exit_as_finished():
    run = autolog.start_run("left open")
    autolog.log_metric("x", 1.0)
    runs._at_exit()  # what the interpreter runs at exit (checked for real in test_processes.py)
    runs._state.loggers.clear()  # closed by the exit hook
    assert autolog.get_run(run.run_id).status == "FINISHED"


# -- one way to end a run (issue 10, bug 3) ------------------------------------------------------
@pytest.fixture
def ended_runs():
    """The runs the run-end hooks saw, in order."""
    seen: list = []
    runs.add_run_hooks(on_end=seen.append)
    yield seen
    sys.modules[runs.add_run_hooks.__module__]._run_end_hooks.remove(seen.append)


def test_run_end_ends_the_run_as_end_run_does(ended_runs):
    run = autolog.start_run("ended by its handle")
    autolog.log_metric("before", 1.0)
    run.end()
    assert autolog.active_run() is None
    autolog.log_metric("after", 2.0)  # a new run, as with no run at all: not the ended one
    fresh = autolog.active_run()
    assert fresh is not None and fresh.run_id != run.run_id
    autolog.end_run()
    again = autolog.start_run("started again")  # nothing is "already active"
    assert autolog.active_run() is again
    again.end()
    run.end()  # a second end does nothing
    autolog.end_run()  # nor does end_run() with nothing active
    assert ended_runs == [run, fresh, again]  # each run's end hooks ran once
    stored = autolog.get_run(run.run_id)
    assert stored.status == "FINISHED" and stored.metrics == {"before": 1.0}
    assert autolog.get_run(fresh.run_id).metrics == {"after": 2.0}


def test_run_end_inside_its_with_block_and_of_a_child(ended_runs):
    with autolog.start_run("parent") as parent:
        child = autolog.start_run("child", nested=True)
        child.end("FAILED")
        assert autolog.active_run() is parent  # the child left the stack, the parent is active again
        autolog.log_metric("parent_metric", 1.0)
        parent.end()
        assert autolog.active_run() is None
    # leaving the block after run.end() ends nothing a second time
    assert ended_runs == [child, parent]
    assert autolog.get_run(child.run_id).status == "FAILED"
    stored = autolog.get_run(parent.run_id)
    assert stored.status == "FINISHED" and stored.metrics == {"parent_metric": 1.0}


# -- a helper thread's own run (issue 10, bug 4) ---------------------------------------------------
def test_a_helper_thread_starts_its_own_run_while_the_main_thread_has_one():
    both_active = threading.Barrier(3, timeout=60)  # main, the helper with a run, the one without
    logged = threading.Barrier(3, timeout=60)
    seen: dict = {}
    errors: list = []

    def with_its_own_run():
        try:
            with autolog.start_run("helper's own") as own:
                seen["own"] = own
                seen["own_active"] = autolog.active_run()
                both_active.wait()
                autolog.log_metric("helper_metric", 2.0)
                logged.wait()
            seen["after_own"] = autolog.active_run()  # back to the main thread's run
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def without_a_run():
        try:
            both_active.wait()
            seen["inherited"] = autolog.active_run()
            autolog.log_metric("inherited_metric", 3.0)  # into the main thread's run
            logged.wait()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    with autolog.start_run("main") as main:
        helpers = [threading.Thread(target=with_its_own_run), threading.Thread(target=without_a_run)]
        for t in helpers:
            t.start()
        both_active.wait()
        assert autolog.active_run() is main  # the helper's run is not the main thread's
        logged.wait()
        for t in helpers:
            t.join(60)
        assert errors == []
        autolog.log_metric("main_metric", 1.0)
    own = seen["own"]
    assert seen["own_active"] is own and own is not main
    assert seen["inherited"] is main and seen["after_own"] is main
    stored_own = autolog.get_run(own.run_id)
    assert stored_own.parent_run_id is None  # a run of its own, not a child of the main thread's
    assert stored_own.status == "FINISHED"
    assert stored_own.metrics == {"helper_metric": 2.0}
    stored_main = autolog.get_run(main.run_id)
    assert stored_main.metrics == {"main_metric": 1.0, "inherited_metric": 3.0}
    assert stored_main.status == "FINISHED"


def test_a_helper_thread_with_its_own_run_still_refuses_a_second():
    with autolog.start_run("main"):
        outcome = {}

        def helper():
            with autolog.start_run("first") as first:
                try:
                    autolog.start_run("second")
                except RuntimeError as exc:
                    outcome["error"] = str(exc)
                outcome["first"] = first

        t = threading.Thread(target=helper)
        t.start()
        t.join(60)
    assert outcome["first"].run_id in outcome["error"] and "already active in this thread" in outcome["error"]
