"""Processes: exit, fork and several writers, each in real subprocesses.

- exit without `flush()`: everything logged is in the store afterwards, the open run FINISHED;
- exit with a backend that hangs: the process still leaves within AUTOLOG_EXIT_FLUSH_TIMEOUT
  and the records are in the journal; with a store that cannot be opened the journal is
  replayed by the next process that logs there (and by `autolog sync`);
- `os.fork()`: the child gets a fresh logger, logs its own points and never re-sends the
  parent's queue; it leaves through `os._exit` after `flush()` or multiprocessing's finalizers;
- a multiprocessing 'fork' Pool whose workers log into the parent's run;
- four processes writing 10,000 points each into one run of one local store.

Each child program is a script written to tmp_path; pytest-timeout guards against hangs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import autolog
from autolog.backends.local import LocalStore
from autolog.backends.memory import InMemoryBackend
from autolog.transport.journal import Journal, journal_dir_for

pytestmark = pytest.mark.timeout(240)


def run_python(tmp_path, source, env=None, timeout=120, name="child.py", check=True):
    script = tmp_path / name
    script.write_text(textwrap.dedent(source))
    full_env = dict(os.environ)
    full_env.update(env or {})
    out = subprocess.run([sys.executable, str(script)], cwd=str(tmp_path), env=full_env, capture_output=True,
                         text=True, timeout=timeout)
    if check:
        assert out.returncode == 0, f"exit {out.returncode}\nstdout:\n{out.stdout[-4000:]}\nstderr:\n{out.stderr[-4000:]}"
    return out


def last_json(out):
    return json.loads(out.stdout.strip().splitlines()[-1])


def read_store(store_dir):
    return LocalStore(store_dir)


def history_steps(store, run_id, key):
    return [m.step for m in store.get_metric_history(run_id, key)]


def test_exit_flushes_without_an_explicit_flush(tmp_path, store_dir):
    out = run_python(tmp_path, """
        import json
        import autolog
        run = autolog.start_run("exit-flush")
        for step in range(10_000):
            autolog.log_metric("loss", 1.0 / (step + 1), step=step)
        autolog.log_param("points", 10_000)
        print(json.dumps({"run_id": run.run_id}))
        # no flush, no end_run: the interpreter's exit does both
    """)
    run_id = last_json(out)["run_id"]
    store = read_store(store_dir)
    assert history_steps(store, run_id, "loss") == list(range(10_000))
    run = store.get_run(run_id)
    assert run.status == "FINISHED" and run.params == {"points": "10000"}


def test_exit_with_a_hung_backend_is_bounded_and_spills(tmp_path, monkeypatch):
    journal_dir = tmp_path / "journal-hung"
    out = run_python(tmp_path, """
        import json
        import autolog
        from autolog.backends import get_backend
        get_backend("memory:hung").write_delay_s = 3600  # every write hangs for an hour
        run = autolog.start_run("hung")
        for step in range(2_000):
            autolog.log_metric("loss", float(step), step=step)
        print(json.dumps({"run_id": run.run_id}), flush=True)
    """, env={"AUTOLOG_TRACKING_URI": "memory:hung", "AUTOLOG_EXIT_FLUSH_TIMEOUT": "1",
              "AUTOLOG_JOURNAL_DIR": str(journal_dir)}, timeout=60)
    run_id = last_json(out)["run_id"]
    assert "did not take everything before exit" in out.stderr
    monkeypatch.setenv("AUTOLOG_JOURNAL_DIR", str(journal_dir))
    journal = Journal("memory:hung", folder=journal_dir_for("memory:hung"))
    assert journal.has_pending()
    target = InMemoryBackend("memory:later")
    result = journal.replay(target)
    assert result.unavailable is None
    assert target.runs[run_id].status == "FINISHED"
    assert sorted({m.step for m in target.metric_history[(run_id, "loss")]}) == list(range(2_000))
    assert not journal.has_pending()


def test_a_store_that_cannot_be_opened_is_replayed_by_the_next_process(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder should be")
    store_dir = str(blocker / "store")  # cannot be created while `blocker` is a file
    env = {"AUTOLOG_TRACKING_URI": store_dir, "AUTOLOG_RETRY_SECONDS": "0.2", "AUTOLOG_EXIT_FLUSH_TIMEOUT": "5"}
    first = run_python(tmp_path, """
        import json
        import autolog
        with autolog.start_run("while-down") as run:
            autolog.log_params({"lr": 0.01})
            for step in range(500):
                autolog.log_metric("loss", float(step), step=step)
        print(json.dumps({"run_id": run.run_id, "ok": autolog.flush(30)}))
    """, env=env, name="first.py")
    spilled = last_json(first)
    assert spilled["ok"] is True  # a flush counts spilled records as done
    journal_files = os.listdir(journal_dir_for(store_dir))
    assert any(f.startswith("segment-") for f in journal_files)

    blocker.unlink()  # the store can be made now
    second = run_python(tmp_path, """
        import json
        import autolog
        with autolog.start_run("after") as run:
            autolog.log_metric("x", 1.0)
        autolog.flush(30)
        print(json.dumps({"run_id": run.run_id}))
    """, env=env, name="second.py")
    later = last_json(second)["run_id"]
    store = read_store(store_dir)
    old = store.get_run(spilled["run_id"])
    assert old.status == "FINISHED" and old.params == {"lr": "0.01"}
    assert history_steps(store, spilled["run_id"], "loss") == list(range(500))
    assert store.get_run(later).metrics == {"x": 1.0}
    assert not [f for f in os.listdir(journal_dir_for(store_dir)) if f.startswith("segment-")]


def test_autolog_sync_replays_a_journal(tmp_path):
    env = {"AUTOLOG_TRACKING_URI": "memory:gone", "AUTOLOG_RETRY_SECONDS": "0.1"}
    out = run_python(tmp_path, """
        import json
        import autolog
        from autolog.backends import BackendUnavailable, get_backend
        get_backend("memory:gone").fail_with = BackendUnavailable("server down")
        with autolog.start_run("spilled") as run:
            for step in range(300):
                autolog.log_metric("loss", float(step), step=step)
        autolog.flush(30)
        print(json.dumps({"run_id": run.run_id}))
    """, env=env)
    run_id = last_json(out)["run_id"]
    folder = journal_dir_for("memory:gone")
    assert os.path.isdir(folder)
    target = str(tmp_path / "synced-store")
    cli = os.path.join(os.path.dirname(sys.executable), "autolog")
    sync = subprocess.run([cli, "sync", "--journal", folder, "--to", target, "--json"],
                          env=dict(os.environ, AUTOLOG_TRACKING_URI=target),  # no other store: journals only
                          capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    assert sync.returncode == 0, sync.stderr
    store = read_store(target)
    assert store.get_run(run_id).status == "FINISHED"
    assert history_steps(store, run_id, "loss") == list(range(300))


FORK_PROGRAM = """
import json, os, sys
import autolog

mode = sys.argv[1]
with autolog.start_run("forking") as run:
    autolog.flush()  # the run exists in the store; what follows stays queued (long interval, big batches)
    for step in range(5_000):
        autolog.log_metric("parent", float(step), step=step)
    # the parent's queue is not empty here: the child must not send it again
    pending_at_fork = autolog.runs.logger_for()._queue.__len__()
    pid = os.fork()
    if pid == 0:
        for step in range(1_000):
            autolog.log_metric("child", float(step), step=step)
        if mode == "flush":
            ok = autolog.flush(60)
            os._exit(0 if ok else 3)
        else:  # the way a multiprocessing worker leaves: its finalizers, then os._exit
            import multiprocessing.util
            multiprocessing.util._exit_function()
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    for step in range(5_000, 6_000):
        autolog.log_metric("parent", float(step), step=step)
print(json.dumps({"run_id": run.run_id, "child_status": status, "pending_at_fork": pending_at_fork}))
"""


@pytest.mark.parametrize("mode", ["flush", "finalizer"])
def test_a_forked_child_gets_a_fresh_logger(tmp_path, store_dir, mode):
    script = tmp_path / "fork.py"
    script.write_text(FORK_PROGRAM)
    out = subprocess.run([sys.executable, "-c", "import multiprocessing.util, runpy, sys; "
                          f"sys.argv=['fork.py', {mode!r}]; runpy.run_path({str(script)!r}, run_name='__main__')"],
                         cwd=str(tmp_path), capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, AUTOLOG_FLUSH_INTERVAL="60", AUTOLOG_BATCH_SIZE="100000"))
    assert out.returncode == 0, out.stderr
    result = last_json(out)
    assert result["child_status"] == 0
    assert result["pending_at_fork"] == 5_000  # the child inherited a full queue, and must not send it
    store = read_store(store_dir)
    # every parent point once (a re-sent queue would duplicate steps), every child point once
    assert history_steps(store, result["run_id"], "parent") == list(range(6_000))
    assert history_steps(store, result["run_id"], "child") == list(range(1_000))
    assert store.get_run(result["run_id"]).status == "FINISHED"


POOL_PROGRAM = """
import json, multiprocessing, os
import autolog

def init(token):
    autolog.attach(token)

def work(chunk):
    for step in range(chunk * 1_000, (chunk + 1) * 1_000):
        autolog.log_metric("worker", float(os.getpid()), step=step)
    return os.getpid()

if __name__ == "__main__":
    with autolog.start_run("pool") as run:
        autolog.log_metric("parent", 1.0)  # the worker thread is running before the fork
        token = autolog.export_run_context()
        pool = multiprocessing.get_context("fork").Pool(2, initializer=init, initargs=(token,))
        pids = pool.map(work, range(8))
        pool.close()
        pool.join()  # workers leave through their finalizers, which flush
    print(json.dumps({"run_id": run.run_id, "workers": len(set(pids))}))
"""


def test_multiprocessing_fork_pool_workers_log_into_the_parents_run(tmp_path, store_dir):
    out = run_python(tmp_path, POOL_PROGRAM, name="pool.py")
    result = last_json(out)
    store = read_store(store_dir)
    assert history_steps(store, result["run_id"], "worker") == list(range(8_000))
    run = store.get_run(result["run_id"])
    assert run.status == "FINISHED" and run.metrics["parent"] == 1.0


WRITER = """
import os, sys
import autolog
index = int(sys.argv[1])
for step in range(10_000):
    autolog.log_metric("shared", float(index), step=index * 10_000 + step)
autolog.log_metric(f"writer_{index}", 1.0)
# attached through AUTOLOG_RUN_CONTEXT: the run is not ended here; exit flushes
"""


def test_four_processes_write_into_one_run(tmp_path, store_dir):
    with autolog.start_run("multi-process") as run:
        token = autolog.export_run_context()
        assert autolog.flush(30)  # the run exists in the store before the writers start
        script = tmp_path / "writer.py"
        script.write_text(WRITER)
        env = dict(os.environ, AUTOLOG_RUN_CONTEXT=token)
        procs = [subprocess.Popen([sys.executable, str(script), str(i)], cwd=str(tmp_path), env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(4)]
        for proc in procs:
            _, err = proc.communicate(timeout=180)
            assert proc.returncode == 0, err
        store = read_store(store_dir)
        assert store.get_run(run.run_id).status == "RUNNING"  # attached processes never end it
    stored = autolog.get_run(run.run_id)
    assert stored.status == "FINISHED"
    assert {f"writer_{i}" for i in range(4)} <= set(stored.metrics)
    points = read_store(store_dir).get_metric_history(run.run_id, "shared")
    assert sorted(m.step for m in points) == list(range(40_000))
    assert {m.value for m in points} == {0.0, 1.0, 2.0, 3.0}
