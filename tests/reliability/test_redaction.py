"""Redaction (hole 12b): by every option string of an argparse action, and by value pattern.

A real script parses `-p SECRET` (declared `-p/--password`), `--pw`, a DSN with `password=`
and an `Authorization: Bearer` header; none of the secrets may reach the run's params or tags.
"""

from __future__ import annotations

import json

import pytest

from autolog.validation import REDACTED, redact_argv, redact_text
from tests.reliability.faults import output

pytestmark = pytest.mark.timeout(120)

SECRETS = ("hunter2", "s3cr3tpw", "dsnpass", "abcdefghijklmnop", "inlinepw")


def test_secrets_never_reach_the_run(tmp_path, store):
    script = tmp_path / "train.py"
    script.write_text(__import__("textwrap").dedent('''
        import argparse, json, sys
        import autolog
        autolog.autolog()
        parser = argparse.ArgumentParser()
        parser.add_argument("-p", "--password")
        parser.add_argument("--pw")
        parser.add_argument("--dsn")
        parser.add_argument("--header")
        parser.add_argument("-q", "--db-password")
        parser.add_argument("--lr", type=float)
        args = parser.parse_args()
        with autolog.start_run(run_name="secrets") as run:
            autolog.log_param("lr", args.lr)
        print(json.dumps({"run_id": run.run_id}))
    '''))
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, str(script), "-p", "hunter2", "--pw", "s3cr3tpw",
                           "--dsn", "host=db user=me password=dsnpass", "--header",
                           "Authorization: Bearer abcdefghijklmnop", "-qinlinepw", "--lr", "0.1"],
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=100)
    assert proc.returncode == 0, output(proc)
    run = store().get_run(json.loads(proc.stdout.splitlines()[-1])["run_id"])
    everything = json.dumps({"params": run.params, "tags": run.tags}, ensure_ascii=False)
    leaked = [s for s in SECRETS if s in everything]
    assert not leaked, f"leaked {leaked}: {everything[:3000]}"
    assert run.params["lr"] == "0.1"
    assert REDACTED in everything


@pytest.mark.parametrize("text, expected", [
    ("host=db password=x1 dbname=d", "host=db password=[REDACTED] dbname=d"),
    ("Driver={x};Server=s;PWD=abc;", "Driver={x};Server=s;PWD=[REDACTED];"),
    ("Authorization: Bearer abc.def.ghi", "Authorization: Bearer [REDACTED]"),
    ("postgresql://user:pw@host/db", "postgresql://host/db"),
    ("lr=0.1 epochs: 10", "lr=0.1 epochs: 10"),
])
def test_value_patterns(text, expected):
    assert redact_text(text) == expected


def test_argv_pw_alias():
    assert redact_argv(["x.py", "--pw", "v", "--pw=w"]) == ["x.py", "--pw", REDACTED, f"--pw={REDACTED}"]
