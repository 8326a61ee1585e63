"""The shortcuts of the scikit-learn integration's fixed per-fit path give what the long way gives."""

import numpy as np
import pytest

from autolog.integrations import sklearn_api


# -- the decision function without its input checks ------------------------------------------------
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_the_linear_decision_is_the_decision_function_bit_for_bit(order, fit_intercept):
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(n_samples=2000, n_features=7, random_state=1)
    model = LogisticRegression(max_iter=300, fit_intercept=fit_intercept).fit(X, y)
    X = np.asarray(X, order=order)
    found = sklearn_api._linear_decision(model, X)
    expected = model.decision_function(X)
    assert found.dtype == expected.dtype and found.shape == expected.shape
    np.testing.assert_array_equal(found, expected)


def test_other_inputs_go_through_the_decision_function(monkeypatch):
    pd = pytest.importorskip("pandas")
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(n_samples=500, n_features=4, random_state=2)
    frame = pd.DataFrame(X, columns=list("abcd"))
    called = []
    for model, data in ((LogisticRegression().fit(X, y), X.astype(np.float32)),  # another dtype
                        (LogisticRegression().fit(frame, y), frame),  # feature names
                        (LogisticRegression().fit(frame, y), X),  # names at fit, none now: sklearn warns
                        (LogisticRegression().fit(X, y), X.tolist())):  # a list
        original = type(model).decision_function
        monkeypatch.setattr(type(model), "decision_function",
                            lambda self, X, original=original: called.append(1) or original(self, X))
        np.testing.assert_array_equal(sklearn_api._linear_decision(model, data), original(model, data))
        monkeypatch.undo()
    assert len(called) == 4


# -- log loss: each row's probability of its true class -----------------------------------------------
@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("weighted", [False, True])
def test_the_log_loss_picks_each_rows_true_class_as_fancy_indexing_does(n_classes, order, weighted):
    rng = np.random.default_rng(n_classes)
    proba = rng.dirichlet(np.ones(n_classes), size=500)
    proba[:3] = np.eye(n_classes)[0]  # probabilities of 0 and 1: clipped
    proba = np.asarray(proba, order=order)
    true = rng.integers(0, n_classes, size=500).astype(np.intp)
    sw = rng.random(500) if weighted else None
    eps = np.finfo(proba.dtype).eps
    loss = -np.log(np.clip(proba[np.arange(len(true)), true], eps, 1 - eps))
    expected = float(np.average(loss, weights=sw)) if weighted else float(np.mean(loss))
    assert sklearn_api._log_loss(proba, (true, true, n_classes, sw)) == expected  # bit for bit


# -- the sort of the ROC curve's keys ------------------------------------------------------------------
@pytest.mark.parametrize("size", [0, 1, 7, 20_000])
def test_the_keys_sorted_by_16_bits_at_a_time_are_np_sorts(size):
    rng = np.random.default_rng(size)
    score = np.concatenate([rng.random(size // 2), np.round(rng.random(size - size // 2), 2)])  # ties too
    score[: min(size, 3)] = [0.0, 1.0, 0.5][: min(size, 3)]
    positive = rng.random(size) > 0.5
    keys = ((score + 0.0).view(np.int64) << 1) | positive
    found = sklearn_api._sorted_keys(keys)
    assert found.dtype == np.int64
    np.testing.assert_array_equal(found, np.sort(keys))


def test_keys_over_the_whole_range_sort_as_np_sort():
    keys = np.random.default_rng(5).integers(0, 2**63 - 1, size=5_000, dtype=np.int64)
    keys[:4] = [0, 2**63 - 1, 2**16, 2**48 - 1]
    np.testing.assert_array_equal(sklearn_api._sorted_keys(keys), np.sort(keys))


# -- the post-fit jobs let go of the data copies once run --------------------------------------------------
def _holds_array_shaped(obj, shape, depth=0, seen=None) -> bool:
    """Does `obj` reach, through closures, containers and slots (not modules, classes or
    globals), a numpy array of `shape`?"""
    import gc
    import types

    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 6 or isinstance(obj, (type, types.ModuleType, str, bytes, int, float)):
        return False
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return obj.shape == shape
    referents = [r for r in gc.get_referents(obj) if not (isinstance(r, dict) and "__name__" in r)]  # no globals
    referents += [getattr(obj, name, None) for name in getattr(type(obj), "__slots__", ())]
    return any(_holds_array_shaped(r, shape, depth + 1, seen) for r in referents)


def test_the_post_fit_jobs_let_go_of_the_data_copies_once_run(monkeypatch):
    """The logger keeps a deferred job until the end of its pass (many fits, in a loop of short
    fits): a job that ran must no longer hold the copies of X it was given."""
    import autolog
    from autolog.runs.handle import ActiveRun
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    jobs = []
    original = ActiveRun.defer

    def defer(self, work, label=None, **kwargs):
        jobs.append(work)
        return original(self, work, label, **kwargs)

    monkeypatch.setattr(ActiveRun, "defer", defer)
    X, y = make_classification(n_samples=400, n_features=5, random_state=0)
    autolog.autolog(log_plots=False)
    LogisticRegression().fit(X, y)
    autolog.flush()
    assert len(jobs) >= 2  # the dataset's description and the post-fit job, at least
    assert not [job for job in jobs if _holds_array_shaped(job, X.shape)]
