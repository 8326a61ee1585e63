"""The choices for drawing the plots autolog logs (issue 18), each measured in fresh interpreters.

    python benchmarks/plots.py [--repeats 7]

The plots are those mlflow.sklearn logs for a LogisticRegression on 20k x 20 (2 classes):
the normalised training confusion matrix, the ROC curve and the precision-recall curve. The
choices:

- `matplotlib, Agg canvas, no pyplot`: scikit-learn's displays (`ConfusionMatrixDisplay`,
  `RocCurveDisplay`, `PrecisionRecallDisplay`, as mlflow.sklearn calls them) each on a bare
  `Figure` on `FigureCanvasAgg` (no pyplot): the cost of importing it, of the first three
  plots, of three later ones;
- `matplotlib imported during the fit`: the same, with matplotlib's import started on a
  thread when the fit starts (a pre-warm) — how much longer the fit takes (RandomForest 50
  trees, which releases the GIL while it builds trees, and LogisticRegression, which does
  not), and how long after the fit the PNG is ready;
- `Pillow` (integrations/plots.py, what autolog draws with now): import, first, later three;
  and the same with Pillow's own PNG writer (`Image.save(format="PNG", compress_level=1)`)
  instead of autolog's (`plots.write_png`: rows unfiltered, zlib level 1; the curves, drawn
  in grey with their colour as one grey level the palette maps to it: `plots.write_palette_png`);
- the plots' data as JSON next to the PNGs (`plots.write_json`).

Every figure is a median over `--repeats` fresh interpreters, wall and CPU (the
interpreter's own CPU time: `time.process_time()`, all its threads).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the repo root, for `benchmarks.harness`

from benchmarks.harness import machine_summary  # noqa: E402

SETUP = """
import numpy as np
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import confusion_matrix
X, y = make_classification(n_samples=20_000, n_features=20, random_state=0)
X5, y5 = make_classification(n_samples=5_000, n_features=20, random_state=1)
model = LogisticRegression(max_iter=200).fit(X, y)
y_pred = model.predict(X)
score = model.predict_proba(X)[:, 1]
matrix = confusion_matrix(y, y_pred, labels=model.classes_)
labels = list(model.classes_)
"""


def draw_matplotlib(ns: dict, folder: str, tag: str) -> None:
    """The three plots as mlflow.sklearn draws them (scikit-learn's displays), on bare Agg figures."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay

    for name, draw, size, dpi in (
            ("confusion_matrix", lambda ax: ConfusionMatrixDisplay.from_predictions(
                ns["y"], ns["y_pred"], normalize="true", cmap="Blues", ax=ax), (6.0, 4.0), 175),
            ("roc_curve", lambda ax: RocCurveDisplay.from_predictions(ns["y"], ns["score"], ax=ax), (6.4, 4.8), 100),
            ("precision_recall_curve", lambda ax: PrecisionRecallDisplay.from_predictions(ns["y"], ns["score"], ax=ax),
             (6.4, 4.8), 100)):
        fig = Figure(figsize=size, dpi=dpi)
        FigureCanvasAgg(fig)
        draw(fig.add_subplot())
        fig.savefig(os.path.join(folder, f"{tag}_{name}.png"), format="png")


def draw_pillow(ns: dict, folder: str, tag: str) -> None:
    """The three plots as autolog draws them (integrations/sklearn_api.py, plots.py)."""
    from autolog.integrations import plots, sklearn_api

    model, y = ns["model"], ns["y"]
    counts = sklearn_api._label_codes(y, ns["y_pred"], model.classes_, None)
    plots.confusion_matrix_png(ns["matrix"], ns["labels"], os.path.join(folder, f"{tag}_confusion_matrix.png"))
    fps, tps, _ = sklearn_api._binary_curve(ns["score"], counts)
    fpr, tpr = sklearn_api._roc_points(fps, tps)
    precision, recall, average_precision = sklearn_api._precision_recall_points(fps, tps)
    plots.curve_png(plots.roc_curve_data(fpr, tpr, 0.9, "LogisticRegression", 1),
                    os.path.join(folder, f"{tag}_roc_curve.png"))
    plots.curve_png(plots.precision_recall_data(recall, precision, average_precision, "LogisticRegression", 1),
                    os.path.join(folder, f"{tag}_precision_recall_curve.png"))


def _pillow_writer(image, path: str) -> None:
    image.save(path, format="PNG", compress_level=1)


def _pillow_palette_writer(image, level: int, colour, path: str) -> None:
    """The curves (drawn in grey, their colour as grey `level`) in RGB, with Pillow's PNG writer."""
    from PIL import Image

    rgb = Image.merge("RGB", (image, image, image))
    rgb.paste(colour, (0, 0), image.point(lambda grey: 255 if grey == level else 0))
    _pillow_writer(rgb, path)


def child(mode: str) -> dict:
    """One measurement, in this (fresh) interpreter."""
    namespace: dict = {}
    exec(SETUP, namespace)
    matrix, labels = namespace["matrix"], namespace["labels"]
    folder = tempfile.mkdtemp(prefix="autolog-bench-plots-")
    out: dict = {}

    def timed(key, fn):
        gc.collect()  # a full collection inside the timed step (large after scikit-learn's imports) is luck, not cost
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        out[key] = time.perf_counter() - wall
        out[key + "_cpu"] = time.process_time() - cpu

    if mode in ("matplotlib", "pillow", "pillow-save"):
        draw = draw_matplotlib if mode == "matplotlib" else draw_pillow
        if mode == "matplotlib":
            timed("import", lambda: __import__("matplotlib.backends.backend_agg") and __import__("matplotlib.figure"))
        else:
            __import__("autolog.integrations.plots")  # autolog itself is imported anyway where it draws
            timed("import", lambda: __import__("PIL.Image") and __import__("PIL.ImageDraw") and __import__("PIL.ImageFont"))
            if mode == "pillow-save":
                from autolog.integrations import plots

                plots.write_png = _pillow_writer
                plots.write_palette_png = _pillow_palette_writer
        timed("first", lambda: draw(namespace, folder, "a"))
        timed("later", lambda: draw(namespace, folder, "b"))
        if mode == "pillow":
            from autolog.integrations import plots

            data = plots.confusion_matrix_data(matrix, labels)
            timed("json", lambda: plots.write_json(data, os.path.join(folder, "a.json")))
        out["png_bytes"] = sum(os.path.getsize(os.path.join(folder, name)) for name in os.listdir(folder)
                               if name.startswith("a_"))
    else:  # "fit:<estimator>:<prewarm or not>": a fit, with matplotlib's import on a thread or not
        import threading

        _, estimator, prewarm = mode.split(":")
        fit = {"rf": lambda: namespace["RandomForestClassifier"](n_estimators=50, random_state=0).fit(
                   namespace["X5"], namespace["y5"]),
               "lr": lambda: namespace["LogisticRegression"](max_iter=200).fit(namespace["X"], namespace["y"])}[estimator]
        thread = None
        start = time.perf_counter()
        if prewarm == "prewarm":
            thread = threading.Thread(target=lambda: __import__("matplotlib.figure") and
                                      __import__("matplotlib.backends.backend_agg"))
            thread.start()
        fit()
        out["fit"] = time.perf_counter() - start
        if thread is not None:
            thread.join()
        draw_matplotlib(namespace, folder, "a")
        out["png_ready"] = time.perf_counter() - start
    return out


def measure(repeats: int) -> dict:
    modes = ["matplotlib", "pillow", "pillow-save", "fit:rf:plain", "fit:rf:prewarm", "fit:lr:plain", "fit:lr:prewarm"]
    samples: dict = {mode: [] for mode in modes}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    for rep in range(repeats + 1):  # round 0 warms the file cache and the bytecode, and is dropped
        shift = rep % len(modes)
        for mode in modes[shift:] + modes[:shift]:
            done = subprocess.run([sys.executable, __file__, "--child", mode], capture_output=True, text=True, env=env)
            if done.returncode != 0:
                raise RuntimeError(done.stderr[-3000:])
            if rep:
                samples[mode].append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {mode: {k: statistics.median(s[k] for s in got) for k in got[0]} for mode, got in samples.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child)))
        return 0
    print(f"machine: {machine_summary()}, load average before: {os.getloadavg()[0]:.1f}\n")
    found = measure(args.repeats)
    print("| how the three plots are drawn | import | the first three | three later ones | PNG files |")
    print("|---|---|---|---|---|")
    for mode, label in (("matplotlib", "matplotlib `Figure` on the Agg canvas, no pyplot (scikit-learn's displays)"),
                        ("pillow", "Pillow (integrations/plots.py), autolog's PNG writer"),
                        ("pillow-save", "Pillow, with Pillow's own PNG writer")):
        t = found[mode]
        print(f"| {label} | {t['import'] * 1e3:.0f} ms ({t['import_cpu'] * 1e3:.0f} ms CPU) | "
              f"{t['first'] * 1e3:.1f} ms ({t['first_cpu'] * 1e3:.1f} ms CPU) | "
              f"{t['later'] * 1e3:.1f} ms ({t['later_cpu'] * 1e3:.1f} ms CPU) | {t['png_bytes'] / 1024:.0f} kB |")
    print(f"\nThe confusion matrix's data as JSON next to its PNG: {found['pillow']['json'] * 1e3:.2f} ms "
          f"({found['pillow']['json_cpu'] * 1e3:.2f} ms CPU).\n")
    print("| matplotlib imported on a thread while the fit runs | the fit | PNG ready after the fit's start |")
    print("|---|---|---|")
    for estimator, label in (("rf", "RandomForest 50 trees, 5k x 20"), ("lr", "LogisticRegression 20k x 20")):
        plain, warm = found[f"fit:{estimator}:plain"], found[f"fit:{estimator}:prewarm"]
        print(f"| {label}: imported after the fit | {plain['fit'] * 1e3:.0f} ms | {plain['png_ready'] * 1e3:.0f} ms |")
        print(f"| {label}: imported during the fit | {warm['fit'] * 1e3:.0f} ms ({(warm['fit'] / plain['fit'] - 1) * 100:+.0f} %) | "
              f"{warm['png_ready'] * 1e3:.0f} ms |")
    print(f"\nMedians of {args.repeats} fresh interpreters each, interleaved. "
          f"Load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
