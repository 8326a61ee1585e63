"""Owner-only files on request (hole 12d): AUTOLOG_PRIVATE_FILES=1 makes the store and the
spill journal folders 0700; without it they follow the umask (documented in docs/security.md)."""

from __future__ import annotations

import os
import stat

import pytest

from tests.reliability.faults import output, run_python

pytestmark = pytest.mark.timeout(120)

SCRIPT = """
    import os
    os.umask(0o022)
    import autolog
    autolog.autolog()
    with autolog.start_run():
        autolog.log_metric("x", 1.0)
    autolog.flush()
    autolog.runs.lifecycle.logger_for().journal._ensure_folder()
"""


@pytest.mark.parametrize("private", [True, False])
def test_store_and_journal_folders(tmp_path, store_dir, private):
    env = {"AUTOLOG_PRIVATE_FILES": "1"} if private else {}
    proc = run_python(tmp_path, SCRIPT, env=env)
    assert proc.returncode == 0, output(proc)
    journal_root = tmp_path / "journal"
    journal = next(journal_root / n for n in os.listdir(journal_root))
    modes = {path: stat.S_IMODE(os.stat(path).st_mode) for path in (store_dir, str(journal))}
    expected = 0o700 if private else 0o755
    assert all(mode == expected for mode in modes.values()), {p: oct(m) for p, m in modes.items()}
