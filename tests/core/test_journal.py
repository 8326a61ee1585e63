"""The spill journal: segments on disk, replay in order, resume after a cut, refused
operations kept aside, segments locked by a live writer left alone, staged artifacts."""

from __future__ import annotations

import json
import os

import pytest

from autolog.backends.base import BackendUnavailable
from autolog.backends.memory import InMemoryBackend
from autolog.entities import Dataset, DatasetInput, Metric, Param, RunStart, RunStatus
from autolog.transport.journal import (
    Journal,
    all_journal_dirs,
    encode_artifact,
    encode_batch,
    encode_create,
    encode_end,
    encode_inputs,
    journal_dir_for,
    journal_root,
    record_count,
)

RUN = "c" * 32


def ops_for_run(run_id=RUN, points=10, start=0):
    return [
        encode_create(RunStart(run_id, "exp", "journalled", 1, None, {"t": "v"})),
        encode_batch(run_id, [Metric("loss", float(s), 1000 + s, s) for s in range(start, start + points)],
                     [Param("lr", "0.1")], [("phase", "train")]),
        encode_end(run_id, RunStatus.FINISHED, 2),
    ]


@pytest.fixture
def journal(tmp_path):
    j = Journal("memory:journal-test", folder=str(tmp_path / "j"))
    yield j
    j.close_segment()


def test_journal_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOLOG_JOURNAL_DIR", str(tmp_path / "spill"))
    assert journal_root() == str(tmp_path / "spill")
    folder = journal_dir_for("http://tracking:5000")
    assert folder.startswith(str(tmp_path / "spill"))
    assert journal_dir_for("http://tracking:5000") == folder
    assert journal_dir_for("http://other:5000") != folder


def test_append_writes_json_lines_and_counts_records(journal):
    count = journal.append(ops_for_run(points=10))
    assert count == 1 + 12 + 1
    segments = journal.pending_segments()
    assert len(segments) == 1
    with open(segments[0], encoding="utf-8") as fh:
        lines = [json.loads(line) for line in fh]
    assert [op["op"] for op in lines] == ["create", "batch", "end"]
    assert record_count(lines[1]) == 12
    # the target is named, so `autolog sync` knows where the journal belongs
    with open(os.path.join(journal.folder, "uri.txt"), encoding="utf-8") as fh:
        assert fh.read().strip() == "memory:journal-test"


def test_all_journal_dirs_lists_targets(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOLOG_JOURNAL_DIR", str(tmp_path / "root"))
    a = Journal("memory:a")
    b = Journal("memory:b")
    a.append(ops_for_run())
    b.append(ops_for_run())
    a.close_segment()
    b.close_segment()
    assert sorted(uri for _, uri in all_journal_dirs()) == ["memory:a", "memory:b"]


def test_replay_delivers_in_order_and_empties_the_journal(journal):
    journal.append(ops_for_run(points=5))
    journal.append([encode_batch(RUN, [Metric("loss", 99.0, 2000, 5)], [], [])])
    backend = InMemoryBackend("memory:replay")
    result = journal.replay(backend)
    assert result.unavailable is None and result.rejected == 0
    assert result.sent == 1 + 7 + 1 + 1
    assert [m.step for m in backend.metric_history[(RUN, "loss")]] == [0, 1, 2, 3, 4, 5]
    run = backend.runs[RUN]
    assert run.params == {"lr": "0.1"} and run.tags["phase"] == "train" and run.tags["t"] == "v"
    assert run.status == RunStatus.FINISHED
    assert not journal.has_pending()
    assert not [f for f in os.listdir(journal.folder) if f.endswith(".done")]


def test_replay_stops_at_an_outage_and_resumes_without_repeats(journal):
    journal.append(ops_for_run(points=3))
    journal.append([encode_batch(RUN, [Metric("loss", 10.0, 3000, 10)], [], [])])
    backend = InMemoryBackend("memory:resume")
    backend.fail_with = BackendUnavailable("down again")
    backend.fail_remaining = None
    first = journal.replay(backend)
    assert first.unavailable is not None and first.sent == 0
    assert journal.has_pending()

    # two operations get through, then the backend fails again
    backend.fail_with = None
    calls = {"n": 0}
    original = backend.log_batch

    def failing_second_batch(run_id, metrics=(), params=(), tags=()):
        calls["n"] += 1
        if calls["n"] == 2:
            raise BackendUnavailable("blip")
        return original(run_id, metrics=metrics, params=params, tags=tags)

    backend.log_batch = failing_second_batch
    second = journal.replay(backend)
    assert second.unavailable is not None
    assert second.sent == 1 + 5 + 1  # create, the first batch, end
    backend.log_batch = original
    third = journal.replay(backend)
    assert third.unavailable is None and third.sent == 1
    steps = [m.step for m in backend.metric_history[(RUN, "loss")]]
    assert steps == [0, 1, 2, 10]  # nothing sent twice
    assert not journal.has_pending()


def test_refused_operations_are_kept_in_rejected_jsonl(journal):
    other = "d" * 32
    journal.append([encode_create(RunStart(other, "exp", "r", 1, None, {})),
                    encode_batch(other, [], [Param("lr", "1")], []),
                    encode_batch(other, [], [Param("lr", "2")], []),  # param conflict: refused for good
                    encode_batch("e" * 32, [Metric("m", 2.0, 1, 0)], [], []),  # a run that never existed
                    encode_batch(other, [Metric("m", 1.0, 1, 0)], [], [])])
    backend = InMemoryBackend("memory:refuse")
    result = journal.replay(backend)
    # refused operations are moved aside; the ones after them are still delivered
    assert result.unavailable is None and result.rejected == 2 and result.sent == 3
    with open(os.path.join(journal.folder, "rejected.jsonl"), encoding="utf-8") as fh:
        rejected = [json.loads(line) for line in fh]
    assert [r["run_id"] for r in rejected] == [other, "e" * 32]
    assert rejected[0]["params"] == [["lr", "2"]] and "already logged" in rejected[0]["error"]
    assert rejected[1]["metrics"] == [["m", 2.0, 1, 0]]
    assert backend.runs[other].params == {"lr": "1"} and backend.runs[other].metrics == {"m": 1.0}
    assert not journal.has_pending()


def test_a_cut_short_line_is_kept_aside(journal):
    journal.append(ops_for_run(points=1))
    journal.close_segment()
    segment = journal.pending_segments()[0]
    with open(segment, "a", encoding="utf-8") as fh:
        fh.write('{"op": "batch", "run_id": "cut')  # a crash in the middle of a write
    backend = InMemoryBackend("memory:cut")
    result = journal.replay(backend)
    assert result.unavailable is None and result.sent == 1 + 3 + 1
    with open(os.path.join(journal.folder, "rejected.jsonl"), encoding="utf-8") as fh:
        entries = [json.loads(line) for line in fh]
    assert entries[0]["op"] == "raw" and "cut" in entries[0]["line"]


def test_segments_locked_by_a_live_writer_are_skipped(journal, tmp_path):
    pytest.importorskip("fcntl")  # segment locks are POSIX flock
    writer = Journal(journal.uri, folder=journal.folder)
    writer.append(ops_for_run(points=2))  # the writer keeps its segment open and locked
    backend = InMemoryBackend("memory:locked")
    result = journal.replay(backend)
    assert result.sent == 0 and backend.runs == {}
    assert writer.has_pending()
    writer.close_segment()  # the writer is done: now it can be replayed
    result = journal.replay(backend)
    assert result.sent == 1 + 4 + 1


def test_staged_artifacts_are_delivered_and_removed(journal, tmp_path):
    source = tmp_path / "model.txt"
    source.write_text("weights")
    staged = journal.stage(str(source))
    assert os.path.isfile(staged) and staged.startswith(os.path.join(journal.folder, "staged"))
    source.write_text("changed later")  # the journal kept its own copy
    journal.append([encode_create(RunStart(RUN, "exp", "r", 1, None, {})),
                    encode_artifact(RUN, staged, "models")])
    backend = InMemoryBackend("memory:artifacts")
    result = journal.replay(backend)
    assert result.unavailable is None
    delivered = os.path.join(backend.runs[RUN].artifact_uri, "models", "model.txt")
    with open(delivered, encoding="utf-8") as fh:
        assert fh.read() == "weights"
    assert not os.path.exists(staged)


def test_replay_into_the_local_store(journal, tmp_path):
    from autolog.backends.local import LocalStore

    journal.append(ops_for_run(points=50))
    store = LocalStore(str(tmp_path / "store"))
    try:
        result = journal.replay(store)
        assert result.unavailable is None and result.sent == 1 + 52 + 1
        run = store.get_run(RUN)
        assert run.status == RunStatus.FINISHED and run.params == {"lr": "0.1"}
        assert [m.step for m in store.get_metric_history(RUN, "loss")] == list(range(50))
        # replaying the same operations again is harmless for creation, params and tags
        journal.append(ops_for_run(points=0))
        again = journal.replay(store)
        assert again.rejected == 0
    finally:
        store.shutdown()


def sample_inputs():
    train = Dataset("X_train", "0a1b2c3d", "code", '{"tags": {}}',
                    '{"mlflow_tensorspec": {"features": "[]", "targets": null}}', '{"features_shape": [10, 2]}')
    evaluation = Dataset("holdout", "4e5f6a7b", "code", '{"tags": {}}', None, None)
    return [DatasetInput(train, {"mlflow.data.context": "train"}), DatasetInput(evaluation, {})]


def test_dataset_inputs_round_trip_through_the_journal(journal):
    backend = InMemoryBackend("memory:journal-inputs")
    op = encode_inputs(RUN, sample_inputs())
    assert op["op"] == "inputs" and record_count(op) == 2
    assert json.loads(json.dumps(op)) == op  # plain JSON
    journal.append([encode_create(RunStart(RUN, "exp", "with data", 1, None, {})), op])
    result = journal.replay(backend)
    assert result.sent == 3 and result.unavailable is None
    assert backend.runs[RUN].inputs == sample_inputs()
    # a second replay of the same inputs (at-least-once) adds nothing
    journal.append([op])
    journal.replay(backend)
    assert backend.runs[RUN].inputs == sample_inputs()
