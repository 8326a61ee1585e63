"""The plain-PyTorch integration, with real torch training loops (tiny models, CPU).

Each test asserts on what a user looks at: the run's params, its metric histories (values
and steps), its checkpoint files, and which runs exist with which status.
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
from torch.utils.data import DataLoader  # noqa: E402

N = 5  # AUTOLOG_LOG_EVERY_N_STEPS in these tests


@pytest.fixture(autouse=True)
def every_n_steps(monkeypatch):
    monkeypatch.setenv("AUTOLOG_LOG_EVERY_N_STEPS", str(N))


def data(rows: int = 64):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(rows, 4, generator=generator)
    return x, x.sum(1, keepdim=True)


def train(steps: int = 12, optimizer_class=torch.optim.SGD, scheduler: bool = False, **options) -> list:
    """A plain loop; returns the loss of each step, read by the test itself."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    optimizer = optimizer_class(model.parameters(), **({"lr": 0.05} | options))
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5) if scheduler else None
    x, y = data()
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if schedule is not None:
            schedule.step()
    return losses


def history(run_id: str, key: str) -> list:
    return [(m.step, m.value) for m in runs._reader().get_metric_history(run_id, key)]


def artifacts(run_id: str, path=None) -> set:
    return {a.path for a in runs._reader().list_artifacts(run_id, path)}


def all_runs() -> list:
    return autolog.search_runs(output_format="list")


def test_loop_logs_optimizer_params_loss_lr_and_steps_into_the_active_run():
    autolog.autolog()
    with autolog.start_run() as run:
        losses = train(steps=12, momentum=0.9)
    autolog.flush()
    logged = autolog.get_run(run.run_id)

    assert logged.params["optimizer_name"] == "SGD"
    assert logged.params["lr"] == "0.05" and logged.params["momentum"] == "0.9"
    assert logged.params["weight_decay"] == "0" and logged.params["nesterov"] == "False"
    assert logged.params["num_optimized_params"] == str(4 * 8 + 8 + 8 + 1)
    # the first step and every N-th, step = the optimizer's step count
    steps = [1, 5, 10]
    assert history(run.run_id, "loss") == [(s, pytest.approx(losses[s - 1])) for s in steps]
    assert history(run.run_id, "optimizer_steps") == [(s, float(s)) for s in steps]
    assert history(run.run_id, "lr-SGD") == [(s, 0.05) for s in steps]
    assert len(all_runs()) == 1  # no run of its own while the user's is active


def test_lr_follows_a_scheduler_and_each_optimizer_and_param_group_is_named():
    autolog.autolog()
    with autolog.start_run() as run:
        train(steps=10, scheduler=True)
        first = torch.nn.Linear(2, 1)
        second = torch.nn.Linear(2, 1)
        adam = torch.optim.Adam([{"params": first.parameters()}, {"params": second.parameters(), "lr": 0.5}], lr=0.1)
        for _ in range(2):
            adam.zero_grad()
            (first(torch.ones(1, 2)) + second(torch.ones(1, 2))).sum().backward()
            adam.step()
    autolog.flush()
    logged = autolog.get_run(run.run_id)

    # StepLR(step_size=3, gamma=0.5) steps after each optimizer step: the lr in use at step s
    assert history(run.run_id, "lr-SGD") == [(1, 0.05), (5, 0.025), (10, 0.00625)]
    assert history(run.run_id, "lr-Adam/pg1") == [(1, 0.1)]
    assert history(run.run_id, "lr-Adam/pg2") == [(1, 0.5)]
    assert logged.params["optimizer_1.optimizer_name"] == "Adam"
    assert logged.params["optimizer_1.betas"] == "(0.9, 0.999)"
    assert logged.params["optimizer_1.num_optimized_params"] == "6"


def test_two_threads_training_at_once_each_log_into_their_own_run():
    autolog.autolog()
    results = {}

    def worker(name, optimizer_class):
        with autolog.start_run(name) as run:
            results[name] = (run.run_id, train(steps=10, optimizer_class=optimizer_class))

    threads = [threading.Thread(target=worker, args=("sgd", torch.optim.SGD)),
               threading.Thread(target=worker, args=("adam", torch.optim.Adam))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    autolog.flush()
    for name, expected_optimizer in (("sgd", "SGD"), ("adam", "Adam")):
        run_id, losses = results[name]
        assert autolog.get_run(run_id).params["optimizer_name"] == expected_optimizer
        assert history(run_id, "loss") == [(s, pytest.approx(losses[s - 1])) for s in (1, 5, 10)]


def test_without_a_run_one_is_started_at_the_first_step_and_ended_when_the_user_ends_it():
    autolog.autolog()
    train(steps=3)
    run = autolog.active_run()
    assert run is not None and run.owner == "autolog" and run.run_name.startswith("torch-")
    autolog.end_run()
    autolog.flush()
    logged = autolog.get_run(run.run_id)
    assert logged.status == "FINISHED"
    assert logged.tags["autolog.integration"] == "torch"
    assert [s for s, _ in history(run.run_id, "loss")] == [1]

    helper = threading.Thread(target=train, kwargs={"steps": 3})  # no run of its own for a helper thread
    helper.start()
    helper.join()
    assert autolog.active_run() is None and len(all_runs()) == 1


EXIT_SCRIPT = """
import sys, torch, autolog
autolog.autolog()
model = torch.nn.Linear(2, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for _ in range(3):
    optimizer.zero_grad(); model(torch.ones(4, 2)).pow(2).mean().backward(); optimizer.step()
print(autolog.active_run().run_id, flush=True)
if sys.argv[1] == "raise":
    raise ValueError("the loop failed")
if sys.argv[1] == "interrupt":
    raise KeyboardInterrupt
"""


@pytest.mark.parametrize("ending, status", [("normal", "FINISHED"), ("raise", "FAILED"), ("interrupt", "KILLED")])
def test_the_run_started_for_a_loop_ends_at_exit_with_the_process_status(store_dir, ending, status):
    env = {**os.environ, "AUTOLOG_TRACKING_URI": store_dir}
    done = subprocess.run([sys.executable, "-c", EXIT_SCRIPT, ending], env=env, capture_output=True, text=True,
                          timeout=120)
    assert (done.returncode == 0) == (ending == "normal"), done.stderr
    if ending == "raise":
        assert "ValueError: the loop failed" in done.stderr  # the interpreter's own report, unchanged
    logged = autolog.get_run(done.stdout.split()[-1])
    assert logged.status == status
    if ending == "raise":
        assert logged.tags["autolog.error"] == "ValueError: the loop failed"


def test_torch_save_to_a_path_is_a_checkpoint_of_the_active_run(tmp_path):
    autolog.autolog()
    model = torch.nn.Linear(3, 1)
    torch.save(model.state_dict(), tmp_path / "before.pt")  # no run active: nothing, no run started
    assert autolog.active_run() is None
    with autolog.start_run() as run:
        train(steps=6)
        path = tmp_path / "model.pt"
        torch.save({"model": model.state_dict(), "epoch": 1}, path)
        torch.save(model, str(tmp_path / "module.pt"))
        buffer = __import__("io").BytesIO()
        torch.save(model.state_dict(), buffer)  # a buffer: left alone
        torch.save(model.state_dict(), path)  # saved again: the newer file replaces it
    autolog.flush()

    assert artifacts(run.run_id, "checkpoints") == {
        "checkpoints/model.pt", "checkpoints/model.pt.json", "checkpoints/module.pt", "checkpoints/module.pt.json"}
    folder = runs._reader().download_artifacts(run.run_id, "checkpoints", str(tmp_path / "dl"))
    restored = torch.load(os.path.join(folder, "model.pt"))
    assert set(restored) == set(model.state_dict())
    with open(os.path.join(folder, "model.pt.json"), encoding="utf-8") as fh:
        assert json.load(fh)["step"] == 6
    assert len(all_runs()) == 1


def test_tensorboard_scalars_and_hparams_are_mirrored(tmp_path):
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    autolog.autolog()
    with autolog.start_run() as run:
        writer = SummaryWriter(str(tmp_path / "tb"))
        for step in range(3):
            writer.add_scalar("Loss/train", 1.0 / (step + 1), step)
        writer.add_scalar("accuracy", torch.tensor(0.75), global_step=7)
        writer.add_scalars("loss", {"train": 0.5, "val": 0.6}, 2)
        writer.add_hparams({"lr": 0.01, "optimizer": "sgd"}, {"hparam/best": 0.9})
        writer.close()
    autolog.flush()
    logged = autolog.get_run(run.run_id)

    assert history(run.run_id, "Loss/train") == [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3))]
    assert history(run.run_id, "accuracy") == [(7, 0.75)]
    assert history(run.run_id, "loss/train") == [(2, 0.5)] and history(run.run_id, "loss/val") == [(2, 0.6)]
    assert history(run.run_id, "hparam/best") == [(0, pytest.approx(0.9))]
    assert logged.params["lr"] == "0.01" and logged.params["optimizer"] == "sgd"


WITHOUT_TENSORBOARD = """
import sys
sys.modules["tensorboard"] = None  # as if tensorboard were not installed
import torch, autolog
autolog.autolog()
try:
    import torch.utils.tensorboard
except ImportError as exc:
    print("ImportError", exc)
model = torch.nn.Linear(2, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
optimizer.zero_grad(); model(torch.ones(4, 2)).pow(2).mean().backward(); optimizer.step()
run = autolog.active_run()
autolog.end_run()
print(sorted(autolog.get_run(run.run_id).metrics))
"""


def test_without_tensorboard_nothing_breaks(store_dir):
    env = {**os.environ, "AUTOLOG_TRACKING_URI": store_dir}
    done = subprocess.run([sys.executable, "-c", WITHOUT_TENSORBOARD], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ImportError" in done.stdout
    assert "'loss'" in done.stdout.splitlines()[-1]


class Squares(torch.utils.data.Dataset):
    def __len__(self):
        return 64

    def __getitem__(self, index):
        x = torch.full((4,), float(index) / 64)
        return x, x.sum(0, keepdim=True)


def test_dataloader_with_forked_workers_neither_deadlocks_nor_duplicates():
    autolog.autolog()
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loader = DataLoader(Squares(), batch_size=4, num_workers=2, multiprocessing_context="fork")
    with autolog.start_run() as run:
        for _ in range(2):  # 2 epochs of 16 batches: new workers each epoch
            for x, y in loader:
                optimizer.zero_grad()
                torch.nn.functional.mse_loss(model(x), y).backward()
                optimizer.step()
                autolog.log_metric("batches", 1.0)  # a busy logger while the workers fork
    autolog.flush()
    assert [s for s, _ in history(run.run_id, "loss")] == [1, 5, 10, 15, 20, 25, 30]
    assert len(history(run.run_id, "batches")) == 32
    assert len(all_runs()) == 1


def test_bad_losses_warn_once_and_training_goes_on(caplog):
    autolog.autolog()
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    with caplog.at_level(logging.WARNING, logger="autolog"), autolog.start_run() as run:
        for step in range(1, 11):
            optimizer.zero_grad()
            out = model(torch.ones(3, 2))
            if step <= 5:  # NaN losses
                (out.sum() * float("nan")).backward()
            else:  # a non-scalar "loss", with the gradient given
                out.backward(gradient=torch.ones_like(out))
            optimizer.step()
        autolog.flush()

    assert history(run.run_id, "optimizer_steps") == [(1, 1.0), (5, 5.0), (10, 10.0)]
    assert history(run.run_id, "loss") == []
    # once per key, not per step: NaN (found on the worker) or not one element (found at once)
    assert len([r for r in caplog.records if "'loss'" in r.getMessage()]) == 1


def test_the_loop_never_reads_a_tensor_on_the_training_thread(monkeypatch):
    """No .item() / float() of autolog's on the caller: the loss is converted on the worker."""
    reads = []
    main = threading.current_thread()
    for name in ("item", "__float__", "tolist"):
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _original=original, _name=name, **kwargs):
            if threading.current_thread() is main:
                reads.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    autolog.autolog()
    with autolog.start_run() as run:
        model = torch.nn.Linear(4, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        x, y = data()
        for _ in range(10):
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
    monkeypatch.undo()
    autolog.flush()
    assert reads == []
    assert len(history(run.run_id, "loss")) == 3


def test_exclusive_leaves_the_users_run_alone():
    autolog.autolog(exclusive=True)
    with autolog.start_run() as run:
        train(steps=5)
    autolog.flush()
    assert autolog.get_run(run.run_id).params == {}
    assert len(all_runs()) == 1


def test_disable_restores_every_patched_attribute_and_hook_then_enable_again(tmp_path):
    owners = identity_owners()
    before = {owner: dict(vars(owner)) for owner in owners}
    hook_before = sys.excepthook
    global_hooks = (sys.modules["torch.optim.optimizer"]._global_optimizer_post_hooks,
                    sys.modules["torch.optim.optimizer"]._global_optimizer_pre_hooks,
                    torch.nn.modules.module._global_forward_hooks)
    hooks_before = [dict(hooks) for hooks in global_hooks]

    autolog.autolog()
    train(steps=2)
    first = autolog.active_run()
    patched = {(p.parent, p.attribute) for p in engine.patched()["torch"].patches}
    assert {(torch.Tensor, "backward"), (torch.optim.Optimizer, "_optimizer_step_code"), (torch, "save")} <= patched

    autolog.autolog(disable=True)
    assert sys.excepthook is hook_before
    assert [dict(hooks) for hooks in global_hooks] == hooks_before
    for owner, attributes in before.items():
        now = {k: v for k, v in vars(owner).items() if k != "__slotnames__"}
        assert {k for k in now if now[k] is not attributes.get(k)} == set(), owner
    autolog.end_run()
    autolog.flush()
    train(steps=2)
    torch.save(torch.nn.Linear(2, 1), tmp_path / "m.pt")
    assert autolog.active_run() is None and len(all_runs()) == 1
    assert [s for s, _ in history(first.run_id, "loss")] == [1]

    autolog.autolog()
    train(steps=2)
    assert autolog.active_run() is not None
    autolog.end_run()
    assert len(all_runs()) == 2


# -- the disable-identity test (tests/integrations/test_disable_identity.py) -------------------------
def identity_owners() -> list:
    """What the integration wraps: Tensor.backward, Optimizer._optimizer_step_code, torch.save
    and SummaryWriter's scalar methods (sys.excepthook is checked in this module's own test).
    One loop runs first, without autolog: torch imports parts of itself lazily (torch._dynamo
    replaces torch.manual_seed) the first time, which is not a patch of autolog's."""
    owners = [torch, torch.Tensor, torch.optim.Optimizer]
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        pass
    else:
        owners.append(SummaryWriter)
    identity_train()
    return owners


def identity_train() -> None:
    """A few steps of a loop, a torch.save, and the end of the loop's run (the end of a script)."""
    import io

    train(steps=2)
    torch.save(torch.nn.Linear(2, 1).state_dict(), io.BytesIO())
    autolog.end_run()
