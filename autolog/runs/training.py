"""The run of a training call: the outermost-call guard and the choice of run.

`TrainingCall` is what an integration's wrapper puts around a user's training call
(autolog/instrument/training_call.py builds on it): it holds the re-entrancy guard
(a fit inside a fit is logged once, at the outermost call, across integrations), picks
the run (the active run for the first training call inside it, a child run for later
ones, or a new run that ends with the call, FAILED when the call raises), and contains
its own errors.
"""

from __future__ import annotations

import contextvars
import uuid
from typing import Any, Mapping, Optional

from autolog.entities import RunStatus
from autolog.instrument import containment
from autolog.runs.handle import TAG_ERROR, ActiveRun
from autolog.runs.lifecycle import _end, _state, active_run, start_run
from autolog.transport.logger import on_worker_thread
from autolog.validation import MAX_TAG_VALUE_LENGTH

TAG_INTEGRATION = "autolog.integration"
TAG_CANDIDATE = "autolog.candidate_index"  # a search's child run: which candidate it is

_in_training: contextvars.ContextVar[Optional["TrainingCall"]] = contextvars.ContextVar("autolog_training_call", default=None)


# -- training calls -------------------------------------------------------------------------
class TrainingCall:
    """Context manager around one training call of an integration.

    `with TrainingCall("sklearn", "LogisticRegression") as call:` gives `call.run`, the
    run to log into, or `call.run is None` when this call must not log (nested in another
    training call, autolog disabled, or `exclusive` with a user run active). Its own
    errors are contained; the user's exception passes through and marks an autolog-made
    run FAILED.
    """

    __slots__ = ("integration", "name", "run", "owns_run", "_token", "tags")

    def __init__(self, integration: str, name: str, tags: Optional[Mapping[str, Any]] = None):
        self.integration = integration
        self.name = name
        self.run: Optional[ActiveRun] = None
        self.owns_run = False
        self._token = None
        self.tags = tags

    def __enter__(self) -> "TrainingCall":
        if _in_training.get() is not None or on_worker_thread():
            return self
        self._token = _in_training.set(self)
        with containment.contained(f"{self.integration}: starting a run"):
            s = _state.settings
            active = active_run()
            if active is not None and active.owner != "autolog":
                if s.exclusive:
                    return self
                if not active.trained_in:
                    active.trained_in = True
                    self.run = active
                    return self
            tags = {TAG_INTEGRATION: self.integration}
            if self.tags:
                tags.update(self.tags)
            self.run = start_run(f"{self.name}-{uuid.uuid4().hex[:6]}", nested=active is not None,
                                 tags=tags, owner="autolog")
            self.owns_run = True
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if self.owns_run and self.run is not None:
                with containment.contained(f"{self.integration}: ending the run"):
                    if exc_type is None:
                        _end(self.run, RunStatus.FINISHED)
                    else:
                        self.run.set_tag(TAG_ERROR, f"{exc_type.__name__}: {exc}"[:MAX_TAG_VALUE_LENGTH], normalize=True)
                        status = RunStatus.KILLED if issubclass(exc_type, KeyboardInterrupt) else RunStatus.FAILED
                        _end(self.run, status)
        finally:
            if self._token is not None:
                _in_training.reset(self._token)
                self._token = None
        return False


def training_call_in_progress() -> Optional[TrainingCall]:
    """The outermost training call this thread is inside, if any."""
    return _in_training.get()


class InsideTrainingCall:
    """Marks this thread as inside a training call, so training calls in it log nothing.

    For the worker threads of a thread pool that a training call dispatches its inner
    fits to (joblib's threading backend): the ContextVar guard does not follow the work
    into those threads, this carries it there.
    """

    __slots__ = ("_token",)

    def __enter__(self) -> "InsideTrainingCall":
        self._token = _in_training.set(TrainingCall("", "inside another training call"))
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        _in_training.reset(self._token)
        return False

