"""Whatever the order of setup in a script: arguments parsed before `autolog()` are still
logged as `args.*` params, and a metric function imported from sklearn.metrics before
`autolog()` still logs post-training metrics. Each case is a real script run as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import autolog


def run_script(tmp_path, store_dir, source: str, *argv: str) -> None:
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(source))
    env = dict(os.environ, AUTOLOG_TRACKING_URI=store_dir, AUTOLOG_LOG_SYSTEM_METRICS="false")
    done = subprocess.run([sys.executable, str(script), *argv], env=env, capture_output=True, text=True,
                          timeout=300, cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]


def only_run():
    (run,) = autolog.search_runs(output_format="list")
    return run


def test_parse_args_before_autolog_at_top_level(tmp_path, store_dir):
    run_script(tmp_path, store_dir, """
        import argparse
        parser = argparse.ArgumentParser()
        parser.add_argument("--alpha", type=float, default=0.1)
        parser.add_argument("--api-key", default="")
        args = parser.parse_args()

        import autolog
        autolog.autolog()
        with autolog.start_run("train"):
            autolog.log_metric("loss", args.alpha)
    """, "--alpha", "0.3", "--api-key", "s3cret")
    params = only_run().params
    assert params["args.alpha"] == "0.3"
    assert params["args.api_key"] == "[REDACTED]"  # the recorder's own rules apply


def test_parse_args_before_autolog_inside_main(tmp_path, store_dir):
    run_script(tmp_path, store_dir, """
        import argparse
        import autolog

        def parse():
            parser = argparse.ArgumentParser()
            parser.add_argument("--epochs", type=int, default=1)
            return parser.parse_args()

        def main(opts):
            autolog.autolog()
            with autolog.start_run("train"):
                pass

        if __name__ == "__main__":
            main(parse())
    """, "--epochs", "7")
    assert only_run().params["args.epochs"] == "7"


def test_click_options_before_autolog(tmp_path, store_dir):
    pytest.importorskip("click")
    run_script(tmp_path, store_dir, """
        import click
        import autolog

        @click.command()
        @click.option("--depth", type=int, default=3)
        def main(depth):
            autolog.autolog()
            with autolog.start_run("train"):
                pass

        main()
    """, "--depth", "5")
    assert only_run().params["args.depth"] == "5"


def test_metric_function_imported_before_autolog_logs_post_training_metrics(tmp_path, store_dir):
    pytest.importorskip("sklearn")
    run_script(tmp_path, store_dir, """
        from sklearn.metrics import f1_score, accuracy_score
        from sklearn.datasets import load_iris
        from sklearn.linear_model import LogisticRegression
        import autolog

        autolog.autolog(log_models=False)
        X, y = load_iris(return_X_y=True)
        X_test, y_test = X[::3], y[::3]
        model = LogisticRegression(max_iter=300).fit(X, y)
        f1_score(y_test, model.predict(X_test), average="macro")
        accuracy_score(y_test, model.predict(X_test))
        autolog.autolog(disable=True)
        import sklearn.metrics
        assert f1_score is sklearn.metrics.f1_score  # disable puts the script's name back too
    """)
    metrics = only_run().metrics
    assert "f1_score_X_test" in metrics and "accuracy_score_X_test" in metrics
