"""Helpers for test suites (autolog's own and third parties' integration tests)."""

from __future__ import annotations

from autolog import config
from autolog.entities import RunStatus
from autolog.instrument import beside_mlflow, containment
from autolog.runs.lifecycle import _current_stack, _end, _set_stack, _state
from autolog.transport.logger import reset_exit_state


def reset_for_tests() -> None:
    """Forget every run, logger and setting of this process (flushing first). For test suites."""
    from autolog.instrument.integration import engine
    from autolog.provenance import capture  # run-context patches (argparse) and the sampler thread, too
    from autolog.runs import handover, process

    engine.disable_all()
    beside_mlflow.unwatch()
    capture.disable()
    process.disable()  # sys.exit and SIGTERM as they were
    handover.reset_for_tests()  # the Spark hand-over patches; a job's run count
    process._process.exit_code = None  # a test's caught sys.exit(n) is not the next test's exit status
    for run in reversed(_current_stack()):
        with containment.contained("ending a run left active by a test"):
            _end(run, RunStatus.FINISHED)
    _set_stack(())
    for logger in list(_state.loggers.values()):
        with containment.contained("closing a logger"):
            logger.close(timeout=30)
    _state.loggers.clear()
    reset_exit_state()  # a test that ran the exit path (`runs._at_exit()`) leaves the process not ending
    _state.settings = config.Settings()
    _state.main_stack = ()
    _state.last_run_id = _state.last_run_uri = None
    _state.env_attached = False

