"""`autolog sync` and autolog.sync: runs copied between stores, spill journals replayed.

Local store to local store (a second store in tmp), twice; partial targets; journals
written by a real process whose store could not be created, delivered by the CLI.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import pytest

import autolog
from autolog.backends import BackendUnavailable, BatchLimits, get_backend
from autolog.backends.local import LocalStore
from autolog.cli import main
from autolog.entities import Metric, Param, RunStart
from autolog.transport.journal import Journal, encode_batch, encode_create, encode_end, journal_dir_for
from autolog.transport.sync import SyncError, batches, sync


@pytest.fixture
def source(store_dir, tmp_path):
    """The test's store with a parent and child, a failed run and a running one."""
    model = tmp_path / "model"
    (model / "weights").mkdir(parents=True)
    (model / "MLmodel").write_text("{}")
    (model / "weights" / "w.bin").write_bytes(os.urandom(2048))
    with autolog.start_run("parent", experiment="exp", tags={"team": "a"}) as parent:
        autolog.log_params({"lr": 0.01, "layers": 4})
        for step in range(50):
            autolog.log_metrics({"loss": 1.0 / (step + 1), "odd": math.nan if step % 7 == 0 else math.inf}, step=step)
        autolog.log_artifacts(str(model), "model")
        with autolog.start_run("child", nested=True) as child:
            autolog.log_metric("fold_score", 0.8)
    with autolog.start_run("failed", experiment="other") as failed:
        autolog.log_param("seed", 7)
        autolog.end_run("FAILED")
    running = autolog.start_run("running", experiment="exp")
    autolog.log_metric("progress", 0.5, step=1)
    autolog.flush()
    ids = {"parent": parent.run_id, "child": child.run_id, "failed": failed.run_id, "running": running.run_id}
    yield ids
    autolog.end_run()


def _content(store, run_id: str) -> dict:
    """Everything a user sees of a run, minus where its artifacts live."""
    run = store.get_run(run_id)
    data = run.to_dict()
    data.pop("artifact_uri")
    data.pop("experiment_id")  # ids are each store's own
    data["tags"].pop("autolog.synced", None)  # the target's note of the copy (autolog/transport/sync.py)
    data["metrics"] = {k: repr(v) for k, v in data["metrics"].items()}
    data["history"] = {key: [(m.step, m.timestamp, repr(m.value)) for m in store.get_metric_history(run_id, key)]
                       for key in sorted(run.metrics)}
    data["files"] = _files(store, run_id)
    return data


def _files(store, run_id, path=None) -> dict:
    out = {}
    for info in store.list_artifacts(run_id, path):
        if info.is_dir:
            out.update(_files(store, run_id, info.path))
        else:
            with open(store.download_artifacts(run_id, info.path, "/tmp"), "rb") as fh:
                out[info.path] = fh.read()
    return out


# -- runs, local to local --------------------------------------------------------------------------

def test_sync_copies_every_run_then_nothing_the_second_time(source, store_dir, tmp_path):
    target_dir = str(tmp_path / "copy")
    first = sync(store_dir, target_dir)
    assert first.ok, first.errors
    assert (first.runs_seen, first.runs_copied, first.runs_skipped) == (4, 4, 0)
    assert first.metric_points == 50 + 50 + 1 + 1
    assert first.artifacts == 2 and first.runs_ended == 3

    src, dst = get_backend(store_dir), get_backend(target_dir)
    for run_id in source.values():
        assert _content(dst, run_id) == _content(src, run_id)
    assert dst.get_run(source["child"]).parent_run_id == source["parent"]
    assert dst.get_run(source["running"]).status == "RUNNING"

    second = sync(store_dir, target_dir)
    assert second.ok
    assert (second.runs_copied, second.runs_updated, second.runs_skipped) == (0, 0, 4)
    assert (second.metric_points, second.params, second.tags, second.artifacts) == (0, 0, 0, 0)
    for run_id in source.values():
        assert _content(dst, run_id) == _content(src, run_id)  # nothing twice


def test_a_run_that_went_on_after_a_sync_gets_only_what_is_new(source, store_dir, tmp_path):
    target_dir = str(tmp_path / "copy")
    sync(store_dir, target_dir)
    autolog.log_metric("progress", 0.9, step=2)
    autolog.set_tag("phase", "late")
    autolog.end_run()
    autolog.flush()
    report = sync(store_dir, target_dir)
    assert (report.runs_updated, report.runs_skipped, report.metric_points, report.tags, report.runs_ended) == (1, 3, 1, 1, 1)
    dst = get_backend(target_dir)
    assert _content(dst, source["running"]) == _content(get_backend(store_dir), source["running"])
    assert [m.value for m in dst.get_metric_history(source["running"], "progress")] == [0.5, 0.9]


def test_a_sync_cut_short_is_completed_without_duplicates(source, store_dir, tmp_path):
    """The target holds part of a run, as after an interrupted sync: only the rest is sent."""
    src = get_backend(store_dir)
    parent = src.get_run(source["parent"])
    target = LocalStore(str(tmp_path / "copy"))
    target.create_run(RunStart(parent.run_id, parent.experiment_name, parent.run_name, parent.start_time))
    history = src.get_metric_history(parent.run_id, "loss")
    target.log_batch(parent.run_id, metrics=history[:20], params=[Param("lr", parent.params["lr"])])
    report = sync(store_dir, target.root)
    assert report.ok and report.runs_updated == 1 and report.runs_copied == 3
    assert report.metric_points == 30 + 50 + 1 + 1
    assert _content(target, parent.run_id) == _content(src, parent.run_id)
    assert len(target.get_metric_history(parent.run_id, "loss")) == 50


def test_dry_run_counts_and_writes_nothing(source, store_dir, tmp_path):
    target_dir = tmp_path / "copy"
    report = sync(store_dir, str(target_dir), dry_run=True)
    assert report.dry_run and report.runs_copied == 4 and report.metric_points == 102
    assert not target_dir.exists()


def test_experiment_filter_brings_the_parents_it_needs(source, store_dir, tmp_path):
    report = sync(store_dir, str(tmp_path / "copy"), experiment="other")
    assert report.runs_copied == 1
    assert [r.run_name for r in get_backend(str(tmp_path / "copy")).search_runs()] == ["failed"]


def test_metric_histories_are_sent_in_batches_within_the_target_limits(source, store_dir):
    target = get_backend("memory:sync-limits")
    target.limits = BatchLimits(max_metrics=7, max_params=1, max_tags=3, max_total=8)
    report = sync(store_dir, "memory:sync-limits")
    assert report.ok, report.errors
    batch_calls = [run_id for method, run_id in target.calls if method == "log_batch"]
    assert batch_calls.count(source["parent"]) >= 100 // 7
    assert len(target.get_metric_history(source["parent"], "loss")) == 50
    assert target.get_run(source["parent"]).params == {"lr": "0.01", "layers": "4"}


def test_batches_never_exceed_any_limit():
    metrics = [Metric("m", float(i), i, i) for i in range(23)]
    params = [Param(f"p{i}", "v") for i in range(5)]
    tags = [(f"t{i}", "v") for i in range(4)]
    limits = BatchLimits(max_metrics=6, max_params=2, max_tags=3, max_total=7)
    chunks = list(batches(metrics, params, tags, limits))
    for m, p, t in chunks:
        assert len(m) <= 6 and len(p) <= 2 and len(t) <= 3 and 0 < len(m) + len(p) + len(t) <= 7
    assert [x for m, _, _ in chunks for x in m] == metrics
    assert [x for _, p, _ in chunks for x in p] == params
    assert [x for _, _, t in chunks for x in t] == tags


def test_a_run_the_target_refuses_is_reported_and_the_others_are_copied(source, store_dir, tmp_path):
    target = LocalStore(str(tmp_path / "copy"))
    target.create_run(RunStart(source["failed"], "other", "failed", 1))
    target.log_batch(source["failed"], params=[Param("seed", "8")])  # a conflicting value
    report = sync(store_dir, target.root)
    assert report.runs_failed == 1 and report.runs_copied == 3 and not report.ok
    assert report.errors == [
        f"run {source['failed']} (failed): param 'seed' is '8' in the target and '7' in the source"
    ]


def test_a_target_that_goes_down_stops_the_sync_and_says_so(source, store_dir):
    target = get_backend("memory:sync-down")
    target.fail_with = BackendUnavailable("connection refused")
    report = sync(store_dir, "memory:sync-down")
    assert report.unavailable == "connection refused" and not report.ok
    target.fail_with = None
    again = sync(store_dir, "memory:sync-down")
    assert again.ok and again.runs_copied == 4


def test_sync_refuses_the_same_store_and_a_missing_source(store_dir, tmp_path):
    LocalStore(store_dir).create_run(RunStart("r", "Default", "r", 1))
    with pytest.raises(SyncError, match="same store"):
        sync(store_dir, store_dir)
    with pytest.raises(SyncError, match="same store .* no spill journal"):
        sync(None, store_dir)
    with pytest.raises(SyncError, match=f"no autolog store at {tmp_path / 'missing'}"):
        sync(str(tmp_path / "missing"), str(tmp_path / "copy"))
    with pytest.raises(SyncError, match="no journal folder"):
        sync(store_dir, str(tmp_path / "copy"), journals=[str(tmp_path / "no-journal")])


# -- journals -----------------------------------------------------------------------------------

def _write_journal(uri: str, run_id: str, points: int = 30) -> Journal:
    journal = Journal(uri)
    journal.append([
        encode_create(RunStart(run_id, "spilled", "offline", 1_700_000_000_000, None, {"origin": "journal"})),
        encode_batch(run_id, [Metric("loss", 1.0 / (s + 1), 1_700_000_000_000 + s, s) for s in range(points)],
                     [Param("lr", "0.3")], [("k", "v")]),
        encode_end(run_id, "FINISHED", 1_700_000_009_000),
    ])
    journal.close_segment()
    return journal


def test_journals_written_for_the_target_are_replayed_once(source, store_dir, tmp_path):
    target_dir = str(tmp_path / "copy")
    _write_journal(target_dir, "j" * 32)
    dry = sync(store_dir, target_dir, dry_run=True)
    assert dry.journal_records == 1 + 32 + 1 and len(dry.journals) == 1
    report = sync(store_dir, target_dir)
    assert report.ok and report.journal_records == 34 and report.runs_copied == 4
    run = get_backend(target_dir).get_run("j" * 32)
    assert (run.run_name, run.status, run.params, run.tags) == ("offline", "FINISHED", {"lr": "0.3"}, {"origin": "journal", "k": "v"})
    again = sync(store_dir, target_dir)
    assert again.journal_records == 0 and again.journals == []
    assert len(get_backend(target_dir).get_metric_history("j" * 32, "loss")) == 30


def test_sync_to_the_tracking_store_replays_its_own_journal(store_dir):
    _write_journal(store_dir, "k" * 32)
    os.makedirs(store_dir)  # the store is there but has never been written
    report = sync(None, store_dir)
    assert report.ok and report.source is None and report.journal_records == 34
    assert get_backend(store_dir).get_run("k" * 32).status == "FINISHED"


def test_journal_of_a_process_whose_store_could_not_be_made_is_delivered_by_the_cli(tmp_path):
    """A real training process logs to a store under a file: everything is spilled; then
    `autolog sync --to GOOD --journal DIR` delivers it, and again delivers nothing twice."""
    blocker = tmp_path / "a-file"
    blocker.write_text("a file where the store's folder should be")
    bad_uri = str(blocker / "store")
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent("""
        import autolog
        with autolog.start_run("spilled-run", experiment="offline") as run:
            autolog.log_params({"alpha": 0.5})
            for step in range(100):
                autolog.log_metric("loss", 1.0 / (step + 1), step=step)
        autolog.flush()
        print(run.run_id)
    """))
    env = dict(os.environ, AUTOLOG_TRACKING_URI=bad_uri, AUTOLOG_RETRY_SECONDS="0.1")  # the test's journal root
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip().splitlines()[-1]
    folder = journal_dir_for(bad_uri)
    assert os.path.isdir(folder) and any(name.startswith("segment-") for name in os.listdir(folder))

    good = str(tmp_path / "good")
    autolog_cli = os.path.join(os.path.dirname(sys.executable), "autolog")
    argv = [autolog_cli, "sync", "--to", good, "--journal", folder]
    first = subprocess.run(argv + ["--json"], env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["source_missing"] is True and summary["journal_records"] >= 100 + 1 and summary["ok"]
    store = LocalStore(good)
    run = store.get_run(run_id)
    assert (run.run_name, run.experiment_name, run.status, run.params) == ("spilled-run", "offline", "FINISHED", {"alpha": "0.5"})
    assert [m.step for m in store.get_metric_history(run_id, "loss")] == list(range(100))

    second = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, second.stderr
    assert "journals: 0 records replayed from 0 journals" in second.stdout
    assert len(store.get_metric_history(run_id, "loss")) == 100


# -- the command -------------------------------------------------------------------------------

def test_sync_command_prints_a_summary_and_json(source, store_dir, tmp_path, capsys):
    target_dir = str(tmp_path / "copy")
    assert main(["sync", "--to", target_dir]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [
        f"sync {store_dir} -> {target_dir}",
        "runs:     4 copied, 0 completed, 0 already there",
        f"records:  102 metric points, 3 params, {_count_tags(store_dir)} tags, 2 artifact files",
        "journals: 0 records replayed from 0 journals",
    ]
    assert main(["sync", "--to", target_dir, "--from", store_dir, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["runs_copied"], data["runs_skipped"], data["ok"]) == (0, 4, True)


def _count_tags(store_dir: str) -> int:
    return sum(len(r.tags) for r in get_backend(store_dir).search_runs())


def test_sync_command_errors_are_one_line(source, store_dir, tmp_path, capsys):
    assert main(["sync", "--to", store_dir, "--from", store_dir]) == 1
    assert capsys.readouterr().err == f"autolog: error: the source and the target are the same store: {store_dir}\n"
    missing = tmp_path / "missing"
    assert main(["sync", "--to", str(tmp_path / "copy"), "--from", str(missing)]) == 1
    assert capsys.readouterr().err == f"autolog: error: no autolog store at {missing}\n"
    with pytest.raises(SystemExit) as exc:
        main(["sync"])
    assert exc.value.code == 2 and "--to" in capsys.readouterr().err


def test_sync_command_reports_refused_runs_with_exit_1(source, store_dir, tmp_path, capsys):
    target = LocalStore(str(tmp_path / "copy"))
    target.create_run(RunStart(source["failed"], "other", "failed", 1))
    target.log_batch(source["failed"], params=[Param("seed", "8")])
    assert main(["sync", "--to", target.root]) == 1
    captured = capsys.readouterr()
    assert "3 copied" in captured.out and "1 refused" in captured.out
    assert captured.err.startswith(f"autolog: error: run {source['failed']} (failed): param 'seed'")
    assert captured.err.count("\n") == 1


def test_backend_errors_do_not_escape_as_tracebacks(tmp_path, capsys):
    assert main(["sync", "--to", "nosuchscheme:somewhere", "--from", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("autolog: error: no autolog backend for URI scheme 'nosuchscheme'") and err.count("\n") == 1


def test_journal_records_the_target_refuses_are_kept_aside_and_reported(tmp_path, capsys):
    target_dir = str(tmp_path / "copy")
    journal = Journal(target_dir)
    journal.append([encode_batch("no-such-run", [Metric("m", 1.0, 1, 0)], [Param("p", "1")], [])])
    journal.close_segment()
    assert main(["sync", "--to", target_dir]) == 1  # the tracking store is missing: journals only
    captured = capsys.readouterr()
    assert "journals: 0 records replayed from 1 journal, 2 rejected" in captured.out
    assert captured.err == (f"autolog: error: 2 journalled records refused by the target; kept in "
                            f"{os.path.join(journal.folder, 'rejected.jsonl')}\n")
    with open(os.path.join(journal.folder, "rejected.jsonl")) as fh:
        kept = [json.loads(line) for line in fh]
    assert kept[0]["run_id"] == "no-such-run" and "RunNotFound" in kept[0]["error"]
