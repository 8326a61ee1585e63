"""contained_callback: a callback that raises on every call leaves the framework's training
exactly as it is without it, is reported once and turns itself off. Real XGBoost,
LightGBM and Lightning; Keras lives in test_tensorflow_toolkit.py (one TF import per process)."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest
import xgboost as xgb

from autolog.instrument.callbacks import BASE_CLASS, contained_callback, is_turned_off


def data(rows: int = 200):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, 4))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    return X, y


class Boom(RuntimeError):
    pass


# -- plain classes ------------------------------------------------------------------------------
def test_every_public_method_and_call_is_contained_and_the_instance_turns_off(contained_errors):
    @contained_callback("demo", default="fallback")
    class Hooks:
        def __init__(self):
            self.calls = []

        def on_step(self, step):
            self.calls.append(step)
            raise Boom("step")

        def __call__(self, env):
            self.calls.append(env)
            raise Boom("call")

        def _private(self):
            raise Boom("private")

        @property
        def value(self):
            return 1

    hooks = Hooks()
    assert hooks.on_step(1) == "fallback"
    assert is_turned_off(hooks)
    assert hooks.on_step(2) == "fallback" and hooks("env") == "fallback"
    assert hooks.calls == [1]  # off after the first error: later calls do not run
    assert [(where, str(exc)) for where, exc in contained_errors] == [
        ("demo: test_every_public_method_and_call_is_contained_and_the_instance_turns_off.<locals>.Hooks.on_step",
         "step")]
    with pytest.raises(Boom):
        hooks._private()  # private methods are the class's own business
    assert hooks.value == 1
    other = Hooks()  # another instance is on
    assert other("env") == "fallback" and other.calls == ["env"] and len(contained_errors) == 2


def test_wrapped_methods_keep_their_name_signature_and_result():
    @contained_callback("demo")
    class Hooks:
        def on_epoch_end(self, epoch: int, logs=None) -> int:
            """Docs."""
            return epoch * 2

    import inspect

    assert Hooks.on_epoch_end.__name__ == "on_epoch_end" and Hooks.on_epoch_end.__doc__ == "Docs."
    assert list(inspect.signature(Hooks.on_epoch_end).parameters) == ["self", "epoch", "logs"]
    assert Hooks().on_epoch_end(3) == 6


def test_keyboard_interrupt_is_not_contained():
    @contained_callback("demo")
    class Hooks:
        def on_step(self):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Hooks().on_step()


def test_base_class_fallback_returns_what_the_base_class_returns(contained_errors):
    class Base:
        def before(self, model):
            return model

        def after(self, model, epoch):
            return False

    @contained_callback("demo", default=BASE_CLASS)
    class Hooks(Base):
        def before(self, model):
            raise Boom

        def after(self, model, epoch):
            raise Boom

        def own(self):
            raise Boom

    hooks = Hooks()
    assert hooks.before("the model") == "the model"
    assert hooks.after("the model", 1) is False and hooks.own() is None
    assert len(contained_errors) == 1


# -- XGBoost ----------------------------------------------------------------------------------
@contained_callback("xgboost", default=BASE_CLASS)
class RaisingXGBoostCallback(xgb.callback.TrainingCallback):
    def before_training(self, model):
        raise Boom("before_training")

    def after_iteration(self, model, epoch, evals_log):
        raise Boom("after_iteration")

    def after_training(self, model):
        raise Boom("after_training")


def train_xgboost(callbacks):
    X, y = data()
    dtrain = xgb.DMatrix(X, label=y)
    evals_result: dict = {}
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2, "seed": 0, "nthread": 1}, dtrain,
                        num_boost_round=8, evals=[(dtrain, "train")], evals_result=evals_result,
                        callbacks=callbacks, verbose_eval=False)
    return booster.predict(dtrain), evals_result


# -- LightGBM ---------------------------------------------------------------------------------
@contained_callback("lightgbm")
class RaisingLightGBMCallback:
    order = 30
    before_iteration = False

    def __call__(self, env):
        raise Boom(f"iteration {env.iteration}")


def train_lightgbm(callbacks):
    X, y = data()
    history: dict = {}
    train_set = lgb.Dataset(X, label=y)
    booster = lgb.train({"objective": "binary", "num_leaves": 4, "seed": 0, "num_threads": 1, "verbose": -1,
                         "deterministic": True}, train_set, num_boost_round=8, valid_sets=[train_set],
                        valid_names=["train"], callbacks=[lgb.record_evaluation(history), *callbacks])
    return booster.predict(X), history


@pytest.mark.parametrize("train,make_callback,metric,where,message", [
    (train_xgboost, RaisingXGBoostCallback, "logloss", "xgboost: RaisingXGBoostCallback.before_training",
     "before_training"),
    (train_lightgbm, RaisingLightGBMCallback, "binary_logloss", "lightgbm: RaisingLightGBMCallback.__call__",
     "iteration 0"),
], ids=["xgboost", "lightgbm"])
def test_a_raising_boosting_callback_leaves_training_unchanged(contained_errors, train, make_callback, metric,
                                                               where, message):
    expected_predictions, expected_history = train([])
    callback = make_callback()
    predictions, history = train([callback])
    np.testing.assert_array_equal(predictions, expected_predictions)
    assert history == expected_history and len(history["train"][metric]) == 8
    assert is_turned_off(callback)
    assert [(w, str(exc)) for w, exc in contained_errors] == [(where, message)]


# -- Lightning --------------------------------------------------------------------------------
def test_a_raising_lightning_callback_leaves_training_unchanged(contained_errors, tmp_path):
    import lightning as L
    import torch

    @contained_callback("lightning")
    class RaisingLightningCallback(L.Callback):
        def on_train_start(self, trainer, pl_module):
            raise Boom("on_train_start")

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            raise Boom("on_train_batch_end")

        def state_dict(self):
            raise Boom("state_dict")

    class Regression(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch, batch_idx):
            X, y = batch
            return torch.nn.functional.mse_loss(self.layer(X).squeeze(-1), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    def train(callbacks):
        torch.manual_seed(0)
        X, y = data(64)
        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(torch.tensor(X, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)),
            batch_size=16)
        model = Regression()
        trainer = L.Trainer(max_epochs=2, callbacks=callbacks, default_root_dir=str(tmp_path), logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
        trainer.fit(model, loader)
        return model.layer.weight.detach().clone(), trainer.global_step

    expected_weight, expected_steps = train([])
    callback = RaisingLightningCallback()
    weight, steps = train([callback])
    assert torch.equal(weight, expected_weight) and steps == expected_steps == 8
    assert [(where.rsplit(".", 1)[-1], str(exc)) for where, exc in contained_errors] == [
        ("on_train_start", "on_train_start")]
