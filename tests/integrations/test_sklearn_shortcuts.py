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
def test_the_data_copies_of_fits_whose_jobs_ran_are_freed_before_the_pass_ends(monkeypatch):
    """The logger's pass holds what was queued until it ends (many fits, in a loop of short
    fits): the copies of X a fit's deferred jobs were given (its data snapshot, the dataset's
    sample of it) are freed once those jobs ran, while the rest of the pass goes on."""
    import gc
    import threading
    import weakref

    import autolog
    from autolog import runs
    from autolog.instrument import snapshots
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    taken = []
    original = snapshots.DataSnapshot.take.__func__

    def take(cls, *args, **kwargs):
        snapshot = original(cls, *args, **kwargs)
        taken.append(weakref.ref(snapshot.X))  # the copy of X (a DataSnapshot has no weak references)
        return snapshot

    monkeypatch.setattr(snapshots.DataSnapshot, "take", classmethod(take))
    X, y = make_classification(n_samples=400, n_features=5, random_state=0)
    autolog.autolog(log_plots=False)
    LogisticRegression().fit(X, y)
    autolog.flush()
    taken.clear()
    logger = runs.logger_for()
    started, release, seen = threading.Event(), threading.Event(), {}

    def hold_the_worker():  # the fits below queue up behind it: the next pass takes them all
        started.set()
        release.wait(10)

    def count_alive():  # in that pass, after the fits' jobs
        gc.collect()
        seen["alive"] = sum(ref() is not None for ref in taken)

    logger.enqueue(("x", hold_the_worker))
    assert started.wait(10)
    for _ in range(3):
        LogisticRegression().fit(X, y)
    logger.enqueue(("x", count_alive))
    release.set()
    autolog.flush()
    assert len(taken) == 3
    assert seen == {"alive": 0}
