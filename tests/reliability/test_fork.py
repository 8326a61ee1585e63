"""Forked children (hole 5), in real processes.

- a child that exits normally never ends the run it inherited: the parent is still logging;
- `with multiprocessing.Pool() as pool: pool.map(...)`: `__exit__` terminates the workers
  (SIGTERM) before any exit hook of theirs runs; what they logged must still arrive, and the
  script must end (a worker that never logged ends by the signal at once; one that did
  flushes from a thread of autolog's, whatever its main thread was doing);
- a child leaving through `os._exit` after `autolog.flush()` keeps its records (without the
  flush they are lost: documented in docs/reliability.md).
"""

from __future__ import annotations

import json

import pytest

from tests.reliability.faults import figures, output, replay_journals, run_python, stored_points

pytestmark = pytest.mark.timeout(240)


def test_a_child_that_exits_never_ends_the_parents_run(tmp_path, store_dir, store):
    proc = run_python(tmp_path, """
        import json, os, sys
        import autolog
        from autolog.backends.local import LocalStore
        autolog.autolog()
        run = autolog.start_run(run_name="parent")
        autolog.log_metric("parent", 0.0, step=0)
        pid = os.fork()
        if pid == 0:
            for i in range(100):
                autolog.log_metric("child", float(i), step=i)
            sys.exit(0)  # a normal exit: atexit hooks run in the child
        _, status = os.waitpid(pid, 0)
        autolog.flush()
        after_child = LocalStore(os.environ["AUTOLOG_TRACKING_URI"]).get_run(run.run_id).status
        for i in range(1, 100):
            autolog.log_metric("parent", float(i), step=i)
        autolog.end_run()
        print(json.dumps({"run_id": run.run_id, "child_exit": status, "after_child": after_child}))
    """)
    assert proc.returncode == 0, output(proc)
    result = json.loads(proc.stdout.splitlines()[-1])
    run_id = result["run_id"]
    child, parent = stored_points(store_dir, run_id, "child"), stored_points(store_dir, run_id, "parent")
    report = f"child {figures(100, child)}; parent {figures(100, parent)}; {result}"
    assert result["child_exit"] == 0, report
    assert result["after_child"] == "RUNNING", report
    assert store().get_run(run_id).status == "FINISHED", report
    assert child == 100 and parent == 100, report


def test_pool_as_a_context_manager_loses_nothing(tmp_path, store_dir, store):
    tasks, points = 8, 500
    proc = run_python(tmp_path, f"""
        import json, multiprocessing
        import autolog

        def task(i):
            for step in range({points}):
                autolog.log_metric(f"worker{{i}}", float(step), step=step)
            return i

        if __name__ == "__main__":
            autolog.autolog()
            run = autolog.start_run(run_name="pool")
            with multiprocessing.get_context("fork").Pool(4) as pool:
                done = pool.map(task, range({tasks}))
            autolog.end_run()
            print(json.dumps({{"run_id": run.run_id, "done": len(done)}}))
    """)
    assert proc.returncode == 0, output(proc)
    run_id = json.loads(proc.stdout.splitlines()[-1])["run_id"]
    stored = sum(stored_points(store_dir, run_id, f"worker{i}") for i in range(tasks))
    # a worker whose flush did not finish within the SIGTERM bound (SQLite busy with its three
    # siblings on a loaded machine) spilled the rest to the journal: replayed as the next
    # autolog process would
    replayed = replay_journals(tmp_path / "journal", store_dir)
    total = sum(stored_points(store_dir, run_id, f"worker{i}") for i in range(tasks))
    report = (f"Pool context manager: {figures(tasks * points, total)} "
              f"({stored} stored by the workers, {replayed} replayed from the journal)\n{output(proc)}")
    print(report)
    assert total == tasks * points, report
    assert store().get_run(run_id).status == "FINISHED", report


def test_os_exit_after_flush_keeps_the_childs_records(tmp_path, store_dir):
    proc = run_python(tmp_path, """
        import json, os
        import autolog
        autolog.autolog()
        run = autolog.start_run(run_name="parent")
        pid = os.fork()
        if pid == 0:
            for i in range(100):
                autolog.log_metric("child", float(i), step=i)
            autolog.flush()
            os._exit(0)
        os.waitpid(pid, 0)
        autolog.end_run()
        print(json.dumps({"run_id": run.run_id}))
    """)
    assert proc.returncode == 0, output(proc)
    run_id = json.loads(proc.stdout.splitlines()[-1])["run_id"]
    stored = stored_points(store_dir, run_id, "child")
    assert stored == 100, figures(100, stored)
