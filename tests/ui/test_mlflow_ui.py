"""`autolog ui`: the real MLflow UI on a local store, driven in a real headless Chromium.

Runs are made with autolog (sklearn fits and a manual run with a 12-step metric), then
`autolog ui` is started as a user starts it (a subprocess on a free loopback port) and
Debian's `/usr/bin/chromium` opens its pages through Playwright (the browser installed by
the system, never one Playwright downloads). What is checked is what a user looks at: the
experiment's runs table with a param and a metric column, a run's metric chart and
artifacts, the compare view of two runs, MLflow's own empty state on the traces page, and
no page answered by a server error (HTTP 5xx) on the way.

The browser tests skip when chromium or playwright is absent (CI installs both: .ci/run);
the command's own errors (no MLflow, no store, an MLflow URI) are tested without a browser.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading

import pytest

import autolog
from autolog import cli

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
START_TIMEOUT_S = 180.0  # an MLflow server on a busy two-core machine
PAGE_TIMEOUT_MS = 90_000
LOSS_STEPS = 12

needs_browser = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium is not installed (.ci/run installs it)")


# -- the command's own errors (no browser) ---------------------------------------------------------
def test_ui_without_mlflow_names_the_extra(store_dir, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` fails, find_spec finds nothing
    assert cli.main(["ui", "--store", store_dir]) == 1
    assert "pip install 'autolog[mlflow]'" in capsys.readouterr().err


def test_ui_without_a_store(tmp_path, capsys):
    assert cli.main(["ui", "--store", str(tmp_path / "nothing")]) == 1
    assert f"no autolog store at {tmp_path / 'nothing'}" in capsys.readouterr().err


def test_ui_of_an_mlflow_uri_points_to_that_server(capsys):
    assert cli.main(["ui", "--tracking-uri", "http://127.0.0.1:5000"]) == 1
    assert "open that server's own UI" in capsys.readouterr().err


# -- the UI in a browser ------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two LogisticRegression fits (C=0.1, C=1.0) and a manual run with a 12-step `loss`."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from autolog.testing import reset_for_tests

    folder = str(tmp_path_factory.mktemp("ui") / "autolog-runs")
    X, y = load_iris(return_X_y=True)
    autolog.autolog(tracking_uri=folder, experiment="iris", log_system_metrics=False)
    try:
        LogisticRegression(C=0.1, max_iter=500).fit(X, y)
        LogisticRegression(C=1.0, max_iter=500).fit(X, y)
        with autolog.start_run("manual-loss", experiment="iris"):
            for step in range(LOSS_STEPS):
                autolog.log_metric("loss", 1.0 / (step + 1), step=step)
        autolog.flush()
        found = autolog.search_runs("iris", output_format="list")
    finally:
        reset_for_tests()
    by_name = {r.run_name: r for r in found}
    fits = sorted((r for r in found if "C" in r.params), key=lambda r: float(r.params["C"]))
    return {"folder": folder, "experiment_id": fits[0].experiment_id, "fits": fits,
            "manual": by_name["manual-loss"]}


@pytest.fixture(scope="module")
def ui(runs, tmp_path_factory):
    """`autolog ui --store ... --port FREE` as a subprocess; the address it prints."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "autolog", "ui", "--store", runs["folder"], "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        cwd=str(tmp_path_factory.mktemp("ui-cwd")))
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    errors: list = []
    threading.Thread(target=lambda: errors.extend(process.stderr), daemon=True).start()
    try:
        try:
            first = lines.get(timeout=START_TIMEOUT_S)
        except queue.Empty:
            pytest.fail("autolog ui printed no address within the start timeout:\n" + "".join(errors)[-3000:])
        assert first.startswith(f"MLflow UI on {runs['folder']}: http://127.0.0.1:{port}"), first
        yield first.rsplit(" ", 1)[1].strip()
    finally:
        process.send_signal(signal.SIGTERM)  # autolog ui stops its server's process group
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    playwright_api = pytest.importorskip("playwright.sync_api", reason="the UI tests drive chromium with playwright")
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium is not installed (.ci/run installs it)")
    with playwright_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": 2200, "height": 1100})
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser, ui, tmp_path):
    """A fresh tab on the UI; fails the test on any HTTP 5xx of the UI's server; a screenshot is
    left in the test's tmp_path whatever happens (to look at when a test fails)."""
    tab = browser.new_page()
    server_errors: list = []
    tab.on("response", lambda r: server_errors.append(f"{r.status} {r.url}") if r.status >= 500 else None)
    tab.open = lambda fragment: tab.goto(f"{ui}/#{fragment}", wait_until="load")
    try:
        yield tab
        assert server_errors == []
    finally:
        tab.screenshot(path=str(tmp_path / "page.png"))
        tab.close()


def rows_text(tab) -> list[str]:
    """The text of each row of the runs table (AG Grid splits a row over its pinned and scrolled parts)."""
    return tab.evaluate("""() => {
        const rows = {};
        for (const el of document.querySelectorAll('.ag-row[row-index]')) {
            const i = el.getAttribute('row-index');
            rows[i] = (rows[i] || '') + ' | ' + el.innerText.replace(/\\n/g, ' | ');
        }
        return Object.values(rows);
    }""")


@needs_browser
def test_experiment_page_lists_the_runs_with_params_and_metrics(page, runs):
    page.open(f"/experiments/{runs['experiment_id']}/runs")
    for run in runs["fits"] + [runs["manual"]]:
        page.get_by_text(run.run_name, exact=True).first.wait_for()
    # MLflow shows attribute columns first; a user adds params and metrics from "Columns"
    page.get_by_role("button", name="Columns", exact=True).click()
    chooser = page.get_by_role("dialog")
    chooser.get_by_text("training_accuracy_score", exact=True).click()
    chooser.get_by_text("C", exact=True).click()
    page.keyboard.press("Escape")
    header = page.locator(".ag-header-cell").filter(has_text="training_accuracy_score")
    header.first.wait_for()
    page.locator(".ag-header-cell").filter(has_text="C").first.wait_for()
    page.wait_for_function("() => document.querySelectorAll('.ag-row[row-index]').length >= 6")
    texts = rows_text(page)
    for run in runs["fits"]:
        row = next(t for t in texts if run.run_name in t)
        accuracy = run.metrics["training_accuracy_score"]
        assert f"| {run.params['C']} " in row + " ", row
        assert any(cell.strip().startswith(str(accuracy)[:4]) for cell in row.split("|")), (accuracy, row)


@needs_browser
def test_run_page_shows_its_metric_chart(page, runs):
    manual = runs["manual"]
    page.open(f"/experiments/{runs['experiment_id']}/runs/{manual.run_id}/model-metrics")
    card = page.get_by_test_id("experiment-view-compare-runs-card").filter(has_text="loss")
    card.first.wait_for()
    points = card.first.locator(".js-plotly-plot .scatterlayer .points path")
    page.wait_for_function(
        f"() => document.querySelectorAll('.js-plotly-plot .scatterlayer .points path').length >= {LOSS_STEPS}")
    assert points.count() == LOSS_STEPS  # one marker per logged step: the whole history was served


@needs_browser
def test_run_page_shows_its_artifacts_and_model(page, runs):
    fit = runs["fits"][0]
    page.open(f"/experiments/{runs['experiment_id']}/runs/{fit.run_id}/artifacts")
    for name in ("model", "training_confusion_matrix.png"):
        page.get_by_text(name, exact=True).first.wait_for()
    page.get_by_text("model", exact=True).first.click()
    page.get_by_text("MLmodel", exact=True).first.wait_for()
    page.get_by_text(f"runs:/{fit.run_id}/model").first.wait_for()  # MLflow's "load this model" snippet


@needs_browser
def test_compare_view_opens_for_two_runs(page, runs):
    a, b = runs["fits"]
    page.open(f'/compare-runs?runs=["{a.run_id}","{b.run_id}"]&experiments=["{runs["experiment_id"]}"]')
    page.get_by_text("Comparing 2 Runs").first.wait_for()
    for run in (a, b):
        page.get_by_text(run.run_id).first.wait_for()
    body = page.inner_text("body")
    assert "0.1" in body and "1.0" in body  # the differing param C, side by side


@needs_browser
def test_traces_show_mlflows_empty_state(page, runs):
    page.open(f"/experiments/{runs['experiment_id']}/traces")
    page.get_by_text("Start tracing your LLM application").first.wait_for()
    assert "went wrong" not in page.inner_text("body").lower()


@needs_browser
def test_the_ui_server_is_mlflows_client_api_too(ui, runs):
    """The UI's server is a read-only MLflow tracking server over the store."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=ui)
    fit = runs["fits"][1]
    run = client.get_run(fit.run_id)
    assert run.data.params["C"] == "1.0"
    assert [m.step for m in client.get_metric_history(runs["manual"].run_id, "loss")] == list(range(LOSS_STEPS))
    with pytest.raises(MlflowException, match="read-only"):
        client.set_tag(fit.run_id, "x", "y")
