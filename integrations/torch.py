"""PyTorch: plain training loops, which have no single call to wrap; and the `pytorch` model flavor.

A plain loop is captured at the parts every loop uses (docs/integrations/torch.md):

- `Tensor.backward`: the tensor it is called on is kept (a reference, nothing read);
- every optimizer step (`Optimizer._optimizer_step_code`, which PyTorch itself calls after
  each `step()` of every optimizer, with the global step hooks): at an optimizer's first step
  in a run its class, its hyper-parameters and the number of parameters it optimizes are
  logged as params; at its first step and every N steps after (N = `log_every_n_steps`, 50
  when unset) its learning rates are logged, and, for the first optimizer of the run, the
  loss of the last `backward()` (`loss`) and the step count (`optimizer_steps`), with
  step = that optimizer's step count. Tensors are converted on the logger's worker
  (`StepMetrics`): the loop never waits for a `.item()`;
- `torch.save(obj, path)` while a run is active: the file lands in the run's `checkpoints/`
  (`capture_checkpoint`); saving to a buffer or file object is left alone;
- `SummaryWriter.add_scalar` / `add_scalars` / `add_hparams` (when tensorboard is
  installed): mirrored as metrics (tag, global step) and params.

Which run: the active run; with none, a run is started (in the main thread) at the first
optimizer step or TensorBoard scalar and ends at process exit: FINISHED, or FAILED (KILLED for Ctrl-C) when
an exception or a non-zero exit status ends the process (the core's exit status,
autolog/runs/process.py). Nothing is captured inside another integration's training
call (a Lightning `fit` logs itself) or in a DataLoader worker; a process that is not the
primary one of its job logs its metrics into the job's run only with `log_all_ranks`, and
without it a launched rank other than rank 0 is not patched at all (`quiet_rank`).

The `pytorch` model flavor (`TorchFlavor`) writes what `mlflow.pytorch.save_model` writes
with its default pickle format, so `mlflow.pyfunc.load_model` and `autolog.load_model`
both read it; the Lightning integration logs its trained modules with it.
"""

from __future__ import annotations

import collections
import functools
import io
import os
import sys
import threading
import types
import uuid
import weakref
from typing import Any, Callable, Iterable, Optional

from autolog import runs
from autolog.instrument.checkpoints import capture_checkpoint, wait_for_checkpoint
from autolog.instrument.integration import Integration
from autolog.instrument.models import ModelFlavor, read_mlmodel
from autolog.instrument.params import flatten
from autolog.instrument.patching import Patcher, leading_arguments
from autolog.instrument.role import is_primary_process, process_role
from autolog.instrument.step_metrics import StepMetrics
from autolog.instrument.training_call import call_arguments
from autolog.runs.training import training_call_in_progress

NAME = "torch"
DEFAULT_EVERY_N_STEPS = 50  # plain loops, when log_every_n_steps is not set
MAX_RUN_STATES = 64  # the runs whose loop state is kept (step counts, optimizers seen); older ones start afresh
MODEL_DATA = "data"  # mlflow.pytorch's folder of the model file
MODEL_FILE = "model.pth"
PICKLE_MODULE_INFO = "pickle_module_info.txt"
MLFLOW_PICKLE_MODULE = "mlflow.pytorch.pickle_module"  # what mlflow.pytorch's loader imports to unpickle


class TorchIntegration(Integration):
    name = NAME
    module = "torch"
    requires = "torch>=2.2"

    def patch(self, patcher: Patcher) -> None:
        import torch

        if quiet_rank():
            return
        loop = LoopCapture(patcher)
        # the two calls of every step: hooks after them, the engine's cheapest kind (`after`)
        patcher.after(torch.Tensor, "backward", loop.after_backward)
        # PyTorch calls this after every step of every optimizer (see Optimizer.profile_hook_step);
        # a hook here is the global step post-hook, recorded by the patcher like every patch
        patcher.after(torch.optim.Optimizer, "_optimizer_step_code", loop.after_step)
        patcher.wrap(torch, "save", loop.on_save)
        patcher.when_imported("torch.utils.tensorboard.writer", loop.patch_tensorboard)


def quiet_rank() -> bool:
    """A rank other than rank 0 of a launched job (torchrun, Lightning's launcher, RANK set),
    with `log_all_ranks` off: nothing of its loop would be logged, so its loop is not wrapped
    at all. A wrapper call at each backward() and optimizer step costs that rank a few
    microseconds, and every rank waits for the slowest at each all-reduce
    (benchmarks/torchrun_overhead.py). Decided when torch is patched: a later
    `autolog(log_all_ranks=True)` in the same process does not patch it."""
    role = process_role()
    return (role.launcher in ("torchrun", "lightning", "torch.distributed") and role.rank > 0
            and not role.is_primary and not runs.settings().log_all_ranks)


# -- the plain loop ------------------------------------------------------------------------------
class _Optimizer:
    """What a run knows of one optimizer: its step count and its learning-rate metric names."""

    __slots__ = ("steps", "lr_names", "primary")

    def __init__(self, lr_names: list, primary: bool):
        self.steps = 0
        self.lr_names = lr_names
        self.primary = primary  # the first optimizer of the run (still alive): the loss is its


class LoopState:
    """What one run has seen of the plain loop: its optimizers and their step counts."""

    __slots__ = ("run", "logging", "writes_once", "every", "metrics", "optimizers", "last", "primary",
                 "primary_steps", "seen", "names_taken")

    def __init__(self, run: Optional[runs.ActiveRun], logging: bool, writes_once: bool = True):
        self.run = run
        self.logging = logging
        self.writes_once = writes_once  # the job's primary process: params and checkpoints are its
        every = runs.settings().log_every_n_steps
        self.every = every if every else DEFAULT_EVERY_N_STEPS
        self.metrics = StepMetrics(run, NAME) if logging else None
        self.optimizers: "weakref.WeakKeyDictionary[Any, _Optimizer]" = weakref.WeakKeyDictionary()
        self.last: tuple = (_dead, None)  # (weak reference, record) of the optimizer that stepped last
        self.primary: Callable[[], Any] = _dead  # a weak reference
        self.primary_steps: Optional[int] = None  # its step count: the step of the loss and checkpoints
        self.seen = 0  # optimizers that stepped in this run (some may be gone)
        self.names_taken: list = []  # their learning-rate metric names

    def stepped(self, optimizer: Any, capture: "LoopCapture") -> None:
        reference, record = self.last
        if reference() is not optimizer:  # the common case, one optimizer, takes no dictionary lookup
            record = self.optimizers.get(optimizer) or self._first_step(optimizer)
            self.last = (weakref.ref(optimizer), record)
        count = record.steps = record.steps + 1
        if record.primary:
            self.primary_steps = count
        if count != 1 and count % self.every:
            return
        values: dict = {name: group.get("lr") for name, group in zip(record.lr_names, optimizer.param_groups)}
        if record.primary:
            values["optimizer_steps"] = count
            loss = getattr(capture.thread, "loss", None)
            if loss is not None:
                values["loss"] = loss
                capture.thread.loss = None
        self.metrics.log(values, step=count)

    def _first_step(self, optimizer: Any) -> _Optimizer:
        index, self.seen = self.seen, self.seen + 1
        primary = self.primary() is None
        if primary:
            self.primary = weakref.ref(optimizer)
        names = lr_metric_names(optimizer, self.names_taken)
        self.names_taken.extend(names)
        record = self.optimizers[optimizer] = _Optimizer(names, primary)
        if self.writes_once:
            self.run.log_params(optimizer_params(optimizer, index), normalize=True)
        return record


def _dead() -> None:
    """Stands for a weak reference to an optimizer that is gone (or never was)."""
    return None


class LoopCapture:
    """The wrappers of the plain loop, and which run they log into."""

    def __init__(self, patcher: Patcher):
        self.patcher = patcher
        self.current: Optional[LoopState] = None  # the last one used: the common case in one lookup
        self.states: "collections.OrderedDict[str, LoopState]" = collections.OrderedDict()  # by run id
        self.auto_run: Optional[runs.ActiveRun] = None  # the run autolog started for the loop
        self.quiet_rank: Any = None  # the settings under which this process was found a rank that logs nothing
        self.thread = threading.local()  # .loss: the tensor of this thread's last backward()

    # -- which run ----------------------------------------------------------------------------
    def state(self, start: bool) -> Optional[LoopState]:
        """The loop state of the active run, when this event is to be logged; a run is
        started for it when `start` and none is active."""
        if training_call_in_progress() is not None:
            return None  # another integration's training call (Lightning's fit) logs itself
        run = runs.active_run()
        state = self.current
        if state is not None and state.run is run and run is not None:
            return state if state.logging else None
        state = self.states.get(run.run_id) if run is not None else None  # another thread's run, or an earlier one
        if state is not None and state.run is run:
            self.current = state
            return state if state.logging else None
        if run is None:
            if not start or threading.current_thread() is not threading.main_thread():
                return None  # a run of its own is the main thread's: only its runs end at exit
            settings = runs.settings()
            if self.quiet_rank is settings or _in_dataloader_worker():
                return None
            if not (is_primary_process() or settings.log_all_ranks):
                # other ranks join rank 0's run (runs/handover.py), for their metrics only; a rank
                # stays what it is: its steps need not ask again until the settings change
                self.quiet_rank = settings
                return None
            run = self._start_run()
            logging = True
        else:
            exclusive = run.owner != "autolog" and runs.settings().exclusive
            # other ranks log into the job's run only with log_all_ranks (their metrics, by rank)
            logging = (not exclusive and not _in_dataloader_worker()
                       and (is_primary_process() or runs.settings().log_all_ranks))
        state = self.current = self.states[run.run_id] = LoopState(run, logging, is_primary_process())
        if len(self.states) > MAX_RUN_STATES:
            self.states.popitem(last=False)
        return state if logging else None

    def _start_run(self) -> runs.ActiveRun:
        run = runs.start_run(f"torch-{uuid.uuid4().hex[:6]}", tags={runs.TAG_INTEGRATION: NAME}, owner="autolog")
        self.auto_run = run  # ended at exit by the core, FAILED / KILLED as the process ends (runs/process.py)
        return run

    # -- the wrappers ---------------------------------------------------------------------------
    def after_backward(self, tensor, args, kwargs, result) -> None:
        if training_call_in_progress() is None:
            self.thread.loss = tensor  # a reference: StepMetrics detaches and converts it, when it is logged

    def after_step(self, optimizer, args, kwargs, result) -> None:
        state = self.state(start=True)
        if state is not None:
            state.stepped(optimizer, self)

    def on_save(self, wrapped, instance, args, kwargs):
        target = call_arguments(wrapped, args, kwargs).get("f")
        path = os.fspath(target) if isinstance(target, (str, os.PathLike)) else None  # not a buffer
        if path is not None:
            wait_for_checkpoint(path)  # a copy of an earlier save of this file may still be running
        result = wrapped(*args, **kwargs)
        if path is not None and not _in_dataloader_worker():
            state = self.state(start=False)
            if state is not None and state.writes_once:  # another rank's file is not the job's
                capture_checkpoint(state.run, path, step=state.primary_steps, integration=NAME)
        return result

    # -- TensorBoard ------------------------------------------------------------------------------
    def patch_tensorboard(self, module: Any) -> None:
        writer = module.SummaryWriter
        # a loop may log every step: hooks after the call, the engine's cheapest kind
        self.patcher.after(writer, "add_scalar", self.after_add_scalar)
        self.patcher.after(writer, "add_scalars", self.after_add_scalars)
        self.patcher.wrap(writer, "add_hparams", self.on_add_hparams)

    def after_add_scalar(self, writer, args, kwargs, result) -> None:
        # add_scalar(tag, scalar_value, global_step=None, ...): read by position, or by name
        state = self.state(start=True)
        if state is not None:
            tag, value, step = leading_arguments(args, kwargs, ("tag", "scalar_value", "global_step"))
            state.metrics.log({tag: value}, step=step or 0)

    def after_add_scalars(self, writer, args, kwargs, result) -> None:
        # add_scalars(main_tag, tag_scalar_dict, global_step=None, ...)
        state = self.state(start=True)
        if state is not None:
            main_tag, values, step = leading_arguments(args, kwargs, ("main_tag", "tag_scalar_dict", "global_step"))
            state.metrics.log({f"{main_tag}/{tag}": value for tag, value in (values or {}).items()}, step=step or 0)

    def on_add_hparams(self, wrapped, instance, args, kwargs):
        # its metrics reach add_scalar (of a writer it makes), and are logged there
        state = self.state(start=True)
        if state is not None:
            hparams = call_arguments(wrapped, args, kwargs).get("hparam_dict")
            if isinstance(hparams, dict) and state.writes_once:
                state.run.log_params(flatten(hparams), normalize=True)
        return wrapped(*args, **kwargs)


def _in_dataloader_worker() -> bool:
    data = sys.modules.get("torch.utils.data")
    return data is not None and data.get_worker_info() is not None


# -- optimizers: shared with the Lightning integration --------------------------------------------
def optimizer_params(optimizer: Any, index: int = 0) -> dict:
    """An optimizer's class, its hyper-parameters (`defaults`) and the number of parameters it
    optimizes. The first optimizer's names are MLflow's (`optimizer_name`, `lr`, `momentum`,
    ...); the i-th after it has the prefix `optimizer_<i>.`."""
    params: dict = {"optimizer_name": type(optimizer).__name__}
    params.update(dict(getattr(optimizer, "defaults", None) or {}))
    params["num_optimized_params"] = sum(p.numel() for group in optimizer.param_groups for p in group["params"])
    return params if index == 0 else flatten({f"optimizer_{index}": params}, max_depth=2)


def lr_metric_names(optimizer: Any, taken: Iterable[str] = ()) -> list:
    """The metric names of an optimizer's learning rates, one per param group, as Lightning's
    LearningRateMonitor names them: `lr-Adam`, `lr-Adam/pg1`, `lr-Adam/pg2` for several groups,
    `lr-Adam-1` for a second Adam."""
    taken = set(taken)
    base = f"lr-{type(optimizer).__name__}"
    stem, n = base, 0
    while any(name == stem or name.startswith(stem + "/") for name in taken):
        n += 1
        stem = f"{base}-{n}"
    groups = len(optimizer.param_groups)
    return [stem] if groups == 1 else [f"{stem}/pg{i + 1}" for i in range(groups)]


# -- the pytorch model flavor --------------------------------------------------------------------
class TorchFlavor(ModelFlavor):
    """A whole `nn.Module`, pickled as `mlflow.pytorch.save_model` pickles it (with cloudpickle,
    so a class defined in `__main__` loads elsewhere), in `data/model.pth`."""

    name = "pytorch"
    library = "torch"
    loader = "autolog.integrations.torch:load_model"

    def __init__(self, requirements: tuple = ()):
        self.requirements = ("cloudpickle", *requirements)

    def snapshot(self, model: Any) -> bytes:
        if isinstance(model, bytes):
            return model  # the integration pickled it already (and warned if it could not)
        return pickle_module_bytes(model)

    def save(self, snapshot: bytes, path: str) -> dict:
        import torch

        data = os.path.join(path, MODEL_DATA)
        os.makedirs(data, exist_ok=True)
        with open(os.path.join(data, MODEL_FILE), "wb") as fh:
            fh.write(snapshot)
        with open(os.path.join(data, PICKLE_MODULE_INFO), "w", encoding="utf-8") as fh:
            fh.write(MLFLOW_PICKLE_MODULE)
        return {
            "pytorch": {"model_data": MODEL_DATA, "pytorch_version": str(torch.__version__), "code": None},
            "python_function": {"loader_module": "mlflow.pytorch", "data": MODEL_DATA,
                                "pickle_module_name": MLFLOW_PICKLE_MODULE, "code": None,
                                "model_config": {"device": None}},
        }


def pickle_module_bytes(model: Any) -> bytes:
    """`torch.save(model)` into bytes with cloudpickle's pickler, as mlflow.pytorch does."""
    import torch

    buffer = io.BytesIO()
    torch.save(model, buffer, pickle_module=_cloudpickle_module())
    return buffer.getvalue()


@functools.lru_cache(maxsize=1)
def _cloudpickle_module() -> types.SimpleNamespace:
    """The `pickle_module` torch.save takes: cloudpickle's pickler under pickle's names, which is
    what `mlflow.pytorch.pickle_module` is (without importing mlflow)."""
    import cloudpickle

    return types.SimpleNamespace(__name__=MLFLOW_PICKLE_MODULE, Pickler=cloudpickle.CloudPickler)


def load_model(folder: str) -> Any:
    """The module of a model folder written by this flavor (or by mlflow.pytorch), in eval mode.
    Unpickling runs code from the file: load only models you trust."""
    import torch

    flavor = (read_mlmodel(folder).get("flavors") or {}).get("pytorch") or {}
    path = os.path.join(folder, flavor.get("model_data", MODEL_DATA))
    if os.path.isdir(path):
        path = os.path.join(path, MODEL_FILE)
    model = torch.load(path, map_location="cpu", weights_only=False)
    model.eval()
    return model
