"""Text UTF-8 cannot store, and one bad record among good ones (hole 6).

- a param, tag, run name with a lone surrogate (what `surrogateescape` makes of a non-UTF-8
  byte in a file name) is stored with U+FFFD in its place, next to 2,000 metric points;
- a script whose argv holds a non-UTF-8 byte still gets its autologged run;
- a backend that refuses one record of a batch for good: only that record is set aside,
  every other record of the batch is stored.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import autolog
from autolog.backends.memory import InMemoryBackend
from autolog.transport.journal import Journal
from autolog.transport.logger import BatchingLogger
from autolog.entities import RunStart
from tests.reliability.faults import figures, write_script

pytestmark = pytest.mark.timeout(180)

BAD = "data\udcff.csv"  # os.fsdecode(b"data\xff.csv")
POINTS = 2000


def test_lone_surrogates_are_normalised_and_lose_nothing(store):
    run = autolog.start_run(run_name="run " + BAD)
    for i in range(POINTS):
        autolog.log_metric("loss", float(i), step=i)
    autolog.log_param("path", BAD)
    autolog.set_tag("file", BAD)
    autolog.log_param("good", 1)
    autolog.end_run()
    autolog.flush()
    stored = store().get_run(run.run_id)
    points = len(store().get_metric_history(run.run_id, "loss"))
    report = f"{figures(POINTS + 3, points + len({'path', 'good'} & set(stored.params)) + ('file' in stored.tags))}"
    assert points == POINTS, report
    assert stored.params["path"] == "data\ufffd.csv" and stored.params["good"] == "1", report
    assert stored.tags["file"] == "data\ufffd.csv", report
    assert stored.run_name == "run data\ufffd.csv", report


def test_a_non_utf8_byte_in_argv_keeps_the_autologged_run(tmp_path, store_dir, store):
    script = write_script(tmp_path, """
        import json, sys
        import autolog
        from sklearn.linear_model import LogisticRegression
        autolog.autolog()
        LogisticRegression(max_iter=50).fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
        autolog.flush()
        print(json.dumps({"run_id": autolog.last_run().run_id}))
    """)
    # the argument as bytes: the child's sys.argv holds a lone surrogate (surrogateescape)
    proc = subprocess.run([os.fsencode(sys.executable), os.fsencode(script), b"--data", b"train\xff.csv"],
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = store().get_run(json.loads(proc.stdout.splitlines()[-1])["run_id"])
    assert run.status == "FINISHED" and run.params["C"] == "1.0", run
    values = list(run.tags.values()) + list(run.params.values())
    assert any("train\ufffd.csv" in v for v in values), (run.tags, run.params)


class RefusingBackend(InMemoryBackend):
    """Refuses for good any batch holding a param or tag whose value contains "BAD"."""

    def log_batch(self, run_id, metrics=(), params=(), tags=()):
        if any("BAD" in str(p.value) for p in params) or any("BAD" in str(v) for _, v in tags):
            self.refused = getattr(self, "refused", 0) + 1
            raise ValueError("refused: a bad value")
        super().log_batch(run_id, metrics=metrics, params=params, tags=tags)


def test_one_refused_record_never_takes_its_batch_down(tmp_path):
    backend = RefusingBackend("memory:refusing")
    logger = BatchingLogger(backend, journal=Journal(backend.uri, folder=str(tmp_path / "journal")),
                            flush_interval=0.05)
    logger.enqueue(("c", RunStart("r1", "Default", "run", 0, None, {})))
    for i in range(POINTS):
        logger.enqueue(("m", "r1", "loss", float(i), 0, i))
    for i in range(10):
        logger.enqueue(("p", "r1", f"p{i}", str(i)))
    logger.enqueue(("p", "r1", "bad", "BAD value"))
    logger.enqueue(("t", "r1", "t", "fine"))
    assert logger.flush(60)
    logger.close(10)
    run = backend.get_run("r1")
    stored = len(backend.get_metric_history("r1", "loss")) + len(run.params) + len(run.tags)
    report = f"{figures(POINTS + 12, stored)} (rejected {logger.stats.rejected}, refused calls {backend.refused})"
    assert stored == POINTS + 11, report
    assert "bad" not in run.params and logger.stats.rejected == 1, report
    rejected = (tmp_path / "journal" / "rejected.jsonl").read_text().splitlines()
    assert len(rejected) == 1 and "BAD value" in rejected[0], report
