"""A full disk under the store and the journal (hole 11), made real with RLIMIT_FSIZE.

The child process limits the size of every file it writes (`resource.setrlimit`, no root, no
mount): the store's SQLite files stop growing at the limit (EFBIG, as ENOSPC on a full disk),
and so does the spill journal's segment. Training goes on; what neither took is counted, and
**one** warning gives the total; the run's end is still kept, so after the next process (no
limit) replays the journal the run is FINISHED and logged - lost equals the warning's total.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.reliability.faults import figures, output, replay_journals, run_python, stored_points

pytestmark = pytest.mark.timeout(240)

LIMIT = 300_000  # bytes per file

CHILD = f"""
    import json, resource, sys
    resource.setrlimit(resource.RLIMIT_FSIZE, ({LIMIT}, {LIMIT}))
    import autolog
    autolog.autolog()
    run = autolog.start_run(run_name="full disk")
    total = 0.0
    for i in range({{points}}):
        total += i  # the training's own work
        autolog.log_metric("loss", float(i), step=i)
    autolog.end_run()
    print(json.dumps({{{{"run_id": run.run_id, "total": total}}}}))
"""

LOST = re.compile(r"autolog: (\d+) records were lost")


@pytest.mark.parametrize("points", [10_000, 60_000], ids=["store full, journal takes the rest", "both full"])
def test_a_full_disk_loses_only_what_it_must_warns_once_and_ends_the_run(tmp_path, store_dir, store, points):
    proc = run_python(tmp_path, CHILD.format(points=points), timeout=180)
    assert proc.returncode == 0, output(proc)
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["total"] == sum(range(points)), output(proc)
    warned = [int(m.group(1)) for m in LOST.finditer(proc.stderr)]
    replayed = replay_journals(tmp_path / "journal", store_dir)  # the next process, no limit
    stored = stored_points(store_dir, result["run_id"], "loss")
    run = store().get_run(result["run_id"])
    report = (f"RLIMIT_FSIZE {LIMIT}: {figures(points, stored)} ({replayed} replayed from the journal), "
              f"loss warnings {warned}, run {run.status}\n{output(proc)}")
    print(report)
    assert run.status == "FINISHED", report
    if stored == points:
        assert warned == [], report
    else:
        assert warned == [points - stored], report  # one warning, and its total is the loss
    if points == 10_000:
        assert stored == points, report
