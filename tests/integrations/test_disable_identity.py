"""`autolog(disable=True)` puts back every patched attribute: identity, not just behaviour.

One parametrised test for every integration: snapshot `vars()` of everything the
integration may patch, enable, train (so that lazily patched classes are patched too),
check that something was patched, disable, and check that every attribute is the very
object it was and that training logs nothing any more. To add an integration, add one
entry to INTEGRATIONS: (name, owners, train), where `owners()` imports the library and
returns the classes and modules to watch and `train()` makes one training call.
"""

from __future__ import annotations

import pytest

import autolog
from autolog import runs


def sklearn_owners() -> list:
    pytest.importorskip("sklearn")
    import sklearn.metrics
    import sklearn.model_selection
    import sklearn.model_selection._validation
    import sklearn.utils.parallel
    from sklearn.base import BaseEstimator
    from sklearn.utils import all_estimators

    owners = {BaseEstimator, sklearn.metrics, sklearn.model_selection, sklearn.model_selection._validation,
              sklearn.utils.parallel._FuncWrapper}
    for _, cls in all_estimators():
        owners.update(c for c in cls.__mro__ if c is not object)
    return list(owners)


def sklearn_train() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score
    from sklearn.model_selection import cross_val_score

    X, y = [[0.0], [1.0], [2.0], [3.0], [4.0], [5.0]], [0, 0, 0, 1, 1, 1]
    model = LogisticRegression().fit(X, y)
    accuracy_score(y, model.predict(X))
    model.score(X, y)
    cross_val_score(LogisticRegression(), X, y, cv=2)


def statsmodels_owners() -> list:
    pytest.importorskip("statsmodels")
    import statsmodels.api  # noqa: F401 - defines the model classes
    import statsmodels.tsa.api  # noqa: F401
    from statsmodels.base.model import Model

    owners, stack = [], [Model]  # every model class: fit is patched where it is defined
    while stack:
        cls = stack.pop()
        owners.append(cls)
        stack.extend(cls.__subclasses__())
    return owners


def statsmodels_train() -> None:
    import numpy as np
    import statsmodels.api as sm
    from statsmodels.tsa.arima.model import ARIMA

    X = sm.add_constant(np.arange(12.0))
    y = 2.0 * np.arange(12.0) + np.sin(np.arange(12.0))
    sm.OLS(y, X).fit()
    sm.Logit((np.sin(1.3 * np.arange(12.0)) > 0).astype(float), X).fit(disp=0)
    ARIMA(y, order=(1, 0, 0)).fit()


INTEGRATIONS = [
    ("sklearn", sklearn_owners, sklearn_train),
    ("statsmodels", statsmodels_owners, statsmodels_train),
]


# pickle's own per-class cache (copyreg._slotnames), written the first time any instance
# of a class is pickled, by autolog's model snapshot as by the user's pickle.dump: not a patch
_NOT_PATCHES = {"__slotnames__"}


def _snapshot(owners: list) -> dict:
    return {owner: {k: v for k, v in vars(owner).items() if k not in _NOT_PATCHES} for owner in owners}


def _changed(before: dict) -> list:
    changed = []
    for owner, attributes in before.items():
        now = {k: v for k, v in vars(owner).items() if k not in _NOT_PATCHES}
        if set(now) != set(attributes):
            changed.append((owner, sorted(set(now) ^ set(attributes))))
            continue
        changed.extend((owner, key) for key, value in attributes.items() if now[key] is not value)
    return changed


def _count_runs() -> int:
    runs.flush()
    try:
        return len(autolog.search_runs())
    except Exception:  # noqa: BLE001 - no store yet: nothing was logged
        return 0


@pytest.mark.parametrize("name, owners, train", INTEGRATIONS, ids=[i[0] for i in INTEGRATIONS])
def test_disable_restores_identity_and_stops_logging(name, owners, train):
    watched = owners()
    before = _snapshot(watched)

    autolog.autolog(integrations=[name])
    train()
    assert _changed(before), f"{name}: nothing was patched"
    logged = _count_runs()
    assert logged >= 1

    autolog.autolog(disable=True)
    assert _changed(before) == []
    train()
    assert _count_runs() == logged

    autolog.autolog(integrations=[name])  # and again: patched and logging once more
    train()
    assert _count_runs() > logged
    autolog.autolog(disable=True)
    assert _changed(before) == []
