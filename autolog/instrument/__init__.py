"""The integration toolkit: everything an integration needs, written once.

- `containment.py`: the one place autolog's own errors are caught, reported once, swallowed;
- `patching.py`: the patching engine (every patch recorded, reverted by identity);
- `integration.py`: the `Integration` base class, the registry (entry points), enabling;
- `training_call.py`: the training-call wrapper object every integration patches with;
- `callbacks.py`: callbacks whose every method is contained;
- `step_metrics.py`: per-step / per-epoch scalars from any framework;
- `checkpoints.py`: checkpoint files snapshotted at once, delivered to `checkpoints/`;
- `models.py`: model folders in the MLflow Model format, for any flavor;
- `snapshots.py`: consistent copies of data and models taken on the training thread;
- `params.py`: flattening nested configs, scalar checks;
- `datasets.py`: what MLflow's `log_input` records about training and evaluation data;
- `role.py`: is this process the primary one of its job (rank 0 / chief / driver)?
"""

# What an integration author imports, by name from here (loaded on first use, so that
# importing one module of this package does not import the others).
_EXPORTS = {
    "Integration": "autolog.instrument.integration",
    "register_integration": "autolog.instrument.integration",
    "unregister_integration": "autolog.instrument.integration",
    "Patcher": "autolog.instrument.patching",
    "Call": "autolog.instrument.training_call",
    "TrainingWrapper": "autolog.instrument.training_call",
    "call_arguments": "autolog.instrument.training_call",
    "flatten": "autolog.instrument.params",
    "is_scalar_number": "autolog.instrument.params",
}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'autolog.instrument' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__() -> list:
    return sorted(list(globals()) + list(_EXPORTS))
