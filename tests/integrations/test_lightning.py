"""The Lightning integration, with real Lightning fits (a tiny regressor, a few epochs, CPU).

Each test asserts on what a user looks at: the run's params, its metric histories (values
and steps), its artifacts (model summary, checkpoints with their scores), the model loaded
back by autolog and by MLflow, and the user's Trainer as it was.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading

import pytest

import autolog
from autolog import runs
from autolog.instrument.integration import engine

torch = pytest.importorskip("torch")
L = pytest.importorskip("lightning.pytorch")
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402


class Regressor(L.LightningModule):
    def __init__(self, lr: float = 0.1, hidden: int = 8, nan_metric: bool = False):
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self(x), y)
        self.log("train_loss", loss)
        self.log("mae", torch.nn.functional.l1_loss(self(x), y), on_step=True, on_epoch=True)
        if self.hparams.nan_metric:
            self.log("broken", torch.tensor(float("nan")))
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self(x), y))

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test_loss", torch.nn.functional.mse_loss(self(x), y))

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)
        return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 1, gamma=0.5)}


class EpochValues(L.Callback):
    """The user's own record of what Lightning computed, read as Lightning's loggers read it."""

    def __init__(self):
        self.epochs: dict = {}
        self.steps: dict = {}

    def on_train_epoch_end(self, trainer, pl_module):
        self.epochs[trainer.current_epoch] = {k: float(v) for k, v in trainer.callback_metrics.items()}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps[trainer.global_step] = {k: float(v) for k, v in trainer.callback_metrics.items()}


def loader(rows: int = 64):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(rows, 4, generator=generator)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=16)


def trainer(**options) -> "L.Trainer":
    settings = dict(max_epochs=3, logger=False, enable_progress_bar=False, enable_model_summary=False,
                    enable_checkpointing=False)
    settings.update(options)
    return L.Trainer(**settings)


def fit(model=None, **options):
    torch.manual_seed(0)
    model = model or Regressor()
    t = trainer(**options)
    t.fit(model, loader(), loader())
    return t, model


def history(run_id: str, key: str) -> list:
    return [(m.step, m.value) for m in runs._reader().get_metric_history(run_id, key)]


def artifacts(run_id: str, path=None) -> set:
    return {a.path for a in runs._reader().list_artifacts(run_id, path)}


def the_run():
    found = autolog.search_runs(output_format="list")
    assert len(found) == 1, [r.run_name for r in found]
    return found[0]


def test_fit_logs_settings_params_epoch_metrics_summary_checkpoints_and_model(tmp_path, monkeypatch):
    values = EpochValues()
    stopper = EarlyStopping("val_loss", patience=5)
    checkpoint = ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), monitor="val_loss", save_top_k=1, save_last=True)
    autolog.autolog()
    torch.manual_seed(0)
    model = Regressor()
    t = trainer(callbacks=[values, stopper, checkpoint], enable_checkpointing=True, accumulate_grad_batches=1)
    callbacks = t.callbacks
    t.fit(model, loader(), loader())
    run = the_run()

    assert t.callbacks is callbacks and t.callbacks == [values, stopper, checkpoint]  # the trainer's list, as it was
    assert run.status == "FINISHED" and run.run_name.startswith("Regressor-")
    p = run.params
    assert (p["epochs"], p["max_epochs"], p["precision"], p["accumulate_grad_batches"]) == ("3", "3", "32-true", "1")
    assert (p["strategy"], p["accelerator"], p["devices"]) == ("SingleDeviceStrategy", "CPUAccelerator", "1")
    assert (p["lr"], p["hidden"], p["nan_metric"]) == ("0.1", "8", "False")  # save_hyperparameters()
    assert (p["optimizer_name"], p["momentum"], p["num_optimized_params"]) == ("SGD", "0.9", "49")
    assert (p["lr_scheduler.name"], p["lr_scheduler.step_size"], p["lr_scheduler.gamma"]) == ("StepLR", "1", "0.5")
    assert p["lr_scheduler.interval"] == "epoch"
    assert (p["monitor"], p["mode"], p["patience"], p["stopped_epoch"]) == ("val_loss", "min", "5", "0")

    # epoch metrics, step = epoch, the values Lightning computed; mae: the epoch mean (mae_epoch)
    for key in ("train_loss", "val_loss", "mae", "mae_epoch", "mae_step"):
        assert history(run.run_id, key) == [(e, pytest.approx(values.epochs[e][key])) for e in range(3)], key
    assert history(run.run_id, "lr-SGD") == [(0, 0.1), (1, 0.05), (2, 0.025)]  # the lr each epoch used
    assert run.metrics["best_score"] == pytest.approx(float(stopper.best_score))
    assert "stopped_epoch" not in run.metrics  # it did not stop early
    assert run.tags["Mode"] == "training"

    reader = runs._reader()
    summary = reader.download_artifacts(run.run_id, "model_summary.txt", str(tmp_path / "dl"))
    with open(summary, encoding="utf-8") as fh:
        text = fh.read()
    assert "net.0" in text and "Trainable params" in text

    # checkpoints: the best and the last, as ModelCheckpoint keeps them, with their scores
    best = os.path.basename(checkpoint.best_model_path)
    assert artifacts(run.run_id, "checkpoints") == {
        f"checkpoints/{best}", f"checkpoints/{best}.json", "checkpoints/last.ckpt", "checkpoints/last.ckpt.json"}
    assert run.tags["autolog.best_checkpoint"] == f"checkpoints/{best}"
    folder = reader.download_artifacts(run.run_id, "checkpoints", str(tmp_path / "dl-ckpt"))
    with open(os.path.join(folder, best + ".json"), encoding="utf-8") as fh:
        described = json.load(fh)
    assert described["metrics"]["val_loss"] == pytest.approx(float(checkpoint.best_model_score))
    restored = torch.load(os.path.join(folder, "last.ckpt"), weights_only=False)
    assert restored["epoch"] == 2 and set(restored["state_dict"]) == set(model.state_dict())

    # the model: autolog and MLflow load it; predictions equal
    x = torch.randn(5, 4)
    model.eval()
    with torch.no_grad():
        expected = model(x)
        assert torch.equal(autolog.load_model(run.run_id)(x), expected)
    mlflow_pyfunc = pytest.importorskip("mlflow.pyfunc")
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")  # MLflow's own guard for pickled models
    monkeypatch.setenv("MLFLOW_DEFAULT_PREDICTION_DEVICE", "cpu")
    model_folder = reader.download_artifacts(run.run_id, "model", str(tmp_path / "dl-model"))
    predicted = mlflow_pyfunc.load_model(model_folder).predict(x.numpy())
    assert predicted == pytest.approx(expected.numpy())
    import mlflow.pytorch

    with torch.no_grad():
        assert torch.equal(mlflow.pytorch.load_model(model_folder)(x), expected)


def test_validate_and_test_after_fit_log_into_the_fits_run():
    autolog.autolog()
    t, model = fit(max_epochs=2)
    t.validate(model, loader())
    t.test(model, loader())
    run = the_run()
    assert [s for s, _ in history(run.run_id, "val_loss")] == [0, 1, 2]  # the validate after the fit: step 2
    assert [s for s, _ in history(run.run_id, "test_loss")] == [2]
    assert run.tags["Mode"] == "testing"
    assert [c for c in t.callbacks if type(c).__name__ == "AutologCallback"] == []  # gone after each call


def test_fit_inside_the_users_run_logs_there_and_leaves_it_active():
    autolog.autolog()
    with autolog.start_run() as run:
        t, model = fit(max_epochs=1)
        t.test(model, loader())
        assert autolog.active_run() is run
    logged = the_run()
    assert logged.run_id == run.run_id and logged.params["optimizer_name"] == "SGD"
    assert {"train_loss", "val_loss", "test_loss"} <= set(logged.metrics)


def test_the_callback_sent_to_other_processes_is_an_inert_one():
    """ddp_spawn pickles the trainer, callbacks included, for the processes it starts."""
    import pickle

    class Pickles(L.Callback):
        def on_train_start(self, trainer, pl_module):
            self.copies = pickle.loads(pickle.dumps([c for c in trainer.callbacks if c is not self]))

    pickles = Pickles()
    autolog.autolog()
    fit(max_epochs=1, callbacks=[pickles])
    assert [type(c) for c in pickles.copies] == [L.Callback]  # autolog's, copied: a plain Callback
    assert "train_loss" in the_run().metrics  # and the original went on logging


def test_step_metrics_every_n_steps_with_learning_rates(monkeypatch):
    monkeypatch.setenv("AUTOLOG_LOG_EVERY_N_STEPS", "2")
    values = EpochValues()
    autolog.autolog()
    fit(max_epochs=2, callbacks=[values], val_check_interval=0.5)  # 4 steps per epoch, validation every 2
    run = the_run()
    # values logged on steps: every 2 optimizer steps, step = global step
    expected = [(s, pytest.approx(values.steps[s]["train_loss"])) for s in (2, 4, 6, 8)]
    assert history(run.run_id, "train_loss") == expected
    assert [s for s, _ in history(run.run_id, "mae_step")] == [2, 4, 6, 8]
    assert [s for s, _ in history(run.run_id, "lr-SGD")] == [2, 4, 6, 8]
    # values logged on epochs: step = epoch, never mixed with the step values; validation
    # values too, although validation also ran in the middle of each epoch
    assert [s for s, _ in history(run.run_id, "val_loss")] == [0, 1]
    assert [s for s, _ in history(run.run_id, "mae_epoch")] == [0, 1]


def test_metrics_are_converted_on_the_worker_not_on_the_training_thread(monkeypatch):
    """autolog adds no .item() / float() of a tensor on the training thread: the same reads
    happen with it as without it (those of Lightning itself and of the test's callback: none)."""
    monkeypatch.setenv("AUTOLOG_LOG_EVERY_N_STEPS", "1")
    stopper = EarlyStopping("val_loss", patience=5)
    main = threading.current_thread()
    reads: list = []
    for name in ("item", "__float__", "tolist"):
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _original=original, _name=name, **kwargs):
            if threading.current_thread() is main:
                reads.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    fit(max_epochs=2, callbacks=[stopper])
    plain = len(reads)
    reads.clear()
    autolog.autolog(log_models=False)
    fit(max_epochs=2, callbacks=[EarlyStopping("val_loss", patience=5)])
    with_autolog = len(reads)
    monkeypatch.undo()
    run = the_run()
    assert with_autolog == plain
    assert len(history(run.run_id, "train_loss")) == 8 and "best_score" in run.metrics


def test_every_checkpoint_is_kept_when_modelcheckpoint_keeps_all(tmp_path):
    autolog.autolog()
    checkpoint = ModelCheckpoint(dirpath=str(tmp_path / "all"), save_top_k=-1, every_n_epochs=1)
    fit(callbacks=[checkpoint], enable_checkpointing=True)
    run = the_run()
    names = sorted(os.listdir(tmp_path / "all"))
    assert len(names) == 3
    assert artifacts(run.run_id, "checkpoints") == {f"checkpoints/{n}" for n in names} | {
        f"checkpoints/{n}.json" for n in names}


def test_log_models_false_and_max_model_size(caplog):
    autolog.autolog(log_models=False)
    fit(max_epochs=1)
    first = the_run()
    assert "model" not in artifacts(first.run_id)
    autolog.autolog(disable=True)

    autolog.autolog(max_model_size_mb=0.001)
    with caplog.at_level(logging.WARNING, logger="autolog"):
        fit(max_epochs=1)
        runs.flush()
    second = autolog.last_run()
    assert "model" not in artifacts(second.run_id) and "model_summary.txt" in artifacts(second.run_id)
    assert "max_model_size_mb=0.001" in second.tags["autolog.model_skipped"]
    assert len([r for r in caplog.records if "max_model_size_mb" in r.getMessage()]) == 1


def test_csv_and_tensorboard_loggers_work_beside_autolog_without_double_logging(tmp_path):
    autolog.autolog()  # every integration: the torch one must not mirror Lightning's TensorBoard writes
    csv_logger = L.loggers.CSVLogger(str(tmp_path), name="csv")
    fit(max_epochs=2, logger=csv_logger, log_every_n_steps=1)
    with open(os.path.join(csv_logger.log_dir, "metrics.csv"), encoding="utf-8") as fh:
        assert "train_loss" in fh.readline()
    first = autolog.last_run()
    assert len(history(first.run_id, "train_loss")) == 2

    if _has_tensorboard():  # the default logger where tensorboard is installed
        fit(max_epochs=2, logger=L.loggers.TensorBoardLogger(str(tmp_path), name="tb"), log_every_n_steps=1)
        second = autolog.last_run()
        assert len(history(second.run_id, "train_loss")) == 2
        assert "epoch" not in second.metrics  # TensorBoardLogger writes it; the torch integration did not mirror it
    assert {r.tags.get("autolog.integration") for r in autolog.search_runs(output_format="list")} == {"lightning"}


def _has_tensorboard() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def test_mlflow_logger_into_its_own_run_and_into_autologs_run(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from lightning.pytorch.loggers import MLFlowLogger

    uri = "sqlite:///" + str(tmp_path / "mlflow.db")
    autolog.autolog(tracking_uri=uri)  # autolog's MLflow backend, the store the logger writes to
    other = MLFlowLogger(experiment_name="theirs", tracking_uri=uri)
    fit(max_epochs=2, logger=other)
    ours = autolog.last_run()
    assert len(history(ours.run_id, "train_loss")) == 2
    assert len(other.experiment.get_metric_history(other.run_id, "val_loss")) == 2

    # the user points the logger at autolog's own run: each point is logged once, by the logger
    with autolog.start_run() as run:
        autolog.flush()
        mlflow_id = autolog.get_run(run.run_id).tags["autolog.mlflow_run_id"]
        shared = MLFlowLogger(tracking_uri=uri, run_id=mlflow_id)
        _, model = fit(max_epochs=2, logger=shared)
    autolog.flush()
    assert [m.step for m in shared.experiment.get_metric_history(mlflow_id, "val_loss")] == [3, 7]  # global steps
    logged = autolog.get_run(run.run_id)
    assert logged.params["optimizer_name"] == "SGD" and logged.params["hidden"] == "8"
    assert "lr-SGD" in logged.metrics

    # the model, read from the MLflow store by MLflow's own client and loaded by mlflow.pyfunc
    import mlflow.pyfunc

    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    monkeypatch.setenv("MLFLOW_DEFAULT_PREDICTION_DEVICE", "cpu")
    folder = shared.experiment.download_artifacts(mlflow_id, "model", str(tmp_path))
    x = torch.randn(3, 4)
    model.eval()
    with torch.no_grad():
        assert mlflow.pyfunc.load_model(folder).predict(x.numpy()) == pytest.approx(model(x).numpy())


def test_nan_metrics_and_an_unpicklable_module_warn_once_and_training_goes_on(caplog):
    class Unpicklable(Regressor):
        def __init__(self):
            super().__init__(nan_metric=True)
            self.lock = threading.Lock()

    autolog.autolog()
    with caplog.at_level(logging.WARNING, logger="autolog"):
        t, model = fit(model=Unpicklable(), max_epochs=2)
        runs.flush()
    run = the_run()
    assert t.current_epoch == 2 and run.status == "FINISHED"
    assert "broken" not in run.metrics and len(history(run.run_id, "train_loss")) == 2
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "'broken'" in m]) == 1
    assert len([m for m in messages if "cannot be pickled" in m]) == 1
    assert "model" not in artifacts(run.run_id)


def test_a_failing_fit_raises_unchanged_and_marks_the_run_failed():
    class Failing(Regressor):
        def training_step(self, batch, batch_idx):
            if self.current_epoch == 1:
                raise RuntimeError("boom in epoch 1")
            return super().training_step(batch, batch_idx)

    autolog.autolog()
    t = trainer(callbacks=[EpochValues()])
    callbacks = t.callbacks
    with pytest.raises(RuntimeError, match="boom in epoch 1"):
        t.fit(Failing(), loader(), loader())
    run = the_run()
    assert run.status == "FAILED" and "boom in epoch 1" in run.tags["autolog.error"]
    assert t.callbacks is callbacks
    assert [s for s, _ in history(run.run_id, "train_loss")] == [0]


def test_disable_restores_identity_and_logs_nothing_then_enable_again():
    owners = identity_owners()
    before = {owner: dict(vars(owner)) for owner in owners}
    autolog.autolog(integrations=["lightning"])
    fit(max_epochs=1)
    patched = {(p.parent, p.attribute) for p in engine.patched()["lightning"].patches}
    assert {(L.Trainer, "fit"), (L.Trainer, "test"), (ModelCheckpoint, "_save_checkpoint")} <= patched
    autolog.autolog(disable=True)
    for owner, attributes in before.items():
        assert {k for k, v in vars(owner).items() if attributes.get(k) is not v} == set(), owner
    fit(max_epochs=1)
    assert len(autolog.search_runs(output_format="list")) == 1
    autolog.autolog(integrations=["lightning"])
    fit(max_epochs=1)
    assert len(autolog.search_runs(output_format="list")) == 2


SUPERSET_FIT = """
import json, os, sys, torch
import pytorch_lightning as pl
from torch.utils.data import DataLoader, TensorDataset

if sys.argv[1] == "mlflow":
    import mlflow, mlflow.pytorch
    mlflow.set_tracking_uri("sqlite:///" + os.path.join(sys.argv[2], "mlflow.db"))
    mlflow.pytorch.autolog(log_models=False, checkpoint=False)  # neither changes a param or metric key
else:
    import autolog
    autolog.autolog()

class Regressor(pl.LightningModule):
    def __init__(self, lr=0.0):
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Linear(4, 1)
    def forward(self, x):
        return self.net(x)
    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self(x), y)
        self.log("train_loss", loss)
        return loss
    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self(x), y))
    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test_loss", torch.nn.functional.mse_loss(self(x), y))
    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

torch.manual_seed(0)
x = torch.randn(64, 4)
data = DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=16)
stopper = pl.callbacks.EarlyStopping("val_loss", patience=1)  # lr=0: no improvement, it stops
trainer = pl.Trainer(max_epochs=6, callbacks=[stopper], logger=False, enable_progress_bar=False,
                     enable_model_summary=False, enable_checkpointing=False)
model = Regressor()
trainer.fit(model, data, data)
trainer.test(model, data)
if sys.argv[1] == "mlflow":
    run = mlflow.last_active_run()
    params, metrics = run.data.params, run.data.metrics
else:
    run = autolog.last_run()
    params, metrics = run.params, run.metrics
print(json.dumps({"params": params, "metrics": metrics}))
"""


def test_our_keys_are_a_superset_of_mlflow_pytorch_autologs_on_the_same_fit(tmp_path, store_dir):
    """The same pytorch_lightning fit (early stopping that stops, then test) under
    mlflow.pytorch.autolog() into a sqlite store and under autolog, each in a fresh process."""
    pytest.importorskip("mlflow")
    pytest.importorskip("pytorch_lightning")
    env = {**os.environ, "AUTOLOG_TRACKING_URI": store_dir}
    logged = {}
    for who in ("mlflow", "autolog"):
        done = subprocess.run([sys.executable, "-c", SUPERSET_FIT, who, str(tmp_path)], env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        logged[who] = json.loads(done.stdout.strip().splitlines()[-1])
    theirs, ours = logged["mlflow"], logged["autolog"]
    assert {"stopped_epoch", "restored_epoch", "best_score", "test_loss"} <= set(theirs["metrics"])
    assert set(theirs["params"]) <= set(ours["params"]), set(theirs["params"]) - set(ours["params"])
    assert set(theirs["metrics"]) <= set(ours["metrics"]), set(theirs["metrics"]) - set(ours["metrics"])
    for key in ("optimizer_name", "lr", "betas", "epochs", "monitor", "patience"):
        assert ours["params"][key] == theirs["params"][key], key
    for key in ("stopped_epoch", "restored_epoch", "wait_count", "best_score", "test_loss"):
        assert ours["metrics"][key] == pytest.approx(theirs["metrics"][key]), key


# -- the disable-identity test (tests/integrations/test_disable_identity.py) -------------------------
def identity_owners() -> list:
    """Trainer (fit, validate, test) and ModelCheckpoint (_save_checkpoint) of each Lightning package."""
    owners = [L.Trainer, ModelCheckpoint]
    try:
        import pytorch_lightning
    except ImportError:
        return owners
    return owners + [pytorch_lightning.Trainer, pytorch_lightning.callbacks.ModelCheckpoint]


def identity_train() -> None:
    """A fit with a checkpoint, then a test."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        t, model = fit(max_epochs=1, enable_checkpointing=True, default_root_dir=folder)
        t.test(model, loader())
