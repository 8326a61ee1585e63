"""Datasets as MLflow's `log_input` records them (autolog/instrument/datasets.py).

The name, digest, schema and profile are compared with what MLflow itself computes for the
same data (mlflow.data.from_numpy / from_pandas), so a run of `mlflow.autolog()` and one of
autolog show the same digest. Then the path of a dataset through a real run into the local
store: a bounded copy taken at the call, the description made on the logger's worker.
"""

from __future__ import annotations

import json
import logging
import threading
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import autolog
from autolog import runs
from autolog.entities import CONTEXT_TAG
from autolog.instrument import datasets
from autolog.instrument.datasets import DIGEST_ROWS, UnsupportedData, describe, log_dataset
from autolog.instrument.snapshots import DataSnapshot

mlflow_data = pytest.importorskip("mlflow.data", reason="compared with MLflow's own datasets")
from mlflow.data.code_dataset_source import CodeDatasetSource  # noqa: E402
from mlflow.data.numpy_dataset import from_numpy  # noqa: E402
from mlflow.data.pandas_dataset import from_pandas  # noqa: E402

SOURCE = CodeDatasetSource({})


def mlflow_numpy(features, targets=None, name=None) -> dict:
    return from_numpy(features=features, targets=targets, source=SOURCE, name=name).to_dict()


def mlflow_pandas(df, name=None) -> dict:
    with warnings.catch_warnings():  # MLflow's hint about integer columns, and pandas' deprecations
        warnings.simplefilter("ignore")
        return from_pandas(df, source=SOURCE, name=name).to_dict()


def same_as_mlflow(ours, theirs: dict) -> None:
    assert (ours.name, ours.digest, ours.schema, ours.profile) == (
        theirs["name"], theirs["digest"], theirs["schema"], theirs["profile"])
    assert ours.source_type == theirs["source_type"] == "code"


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# -- the description, against MLflow's --------------------------------------------------------
def test_a_numpy_array_with_targets_is_described_as_mlflow_does(rng):
    X = rng.normal(size=(30_000, 7))  # more elements than the digest reads
    y = rng.integers(0, 3, size=30_000)
    same_as_mlflow(describe(X, targets=y, name="X_train"), mlflow_numpy(X, y, name="X_train"))
    same_as_mlflow(describe(X, name="X_train"), mlflow_numpy(X, name="X_train"))


@pytest.mark.parametrize("array", [
    np.ones((5, 2, 2), dtype=np.float32),
    np.arange(12, dtype=np.int64),
    np.array([["a", "bb"], ["c", "d"]]),
    np.array([True, False, True]),
])
def test_arrays_of_other_shapes_and_types(array):
    same_as_mlflow(describe(array), mlflow_numpy(array))


def test_a_list_is_described_as_its_array():
    rows = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
    same_as_mlflow(describe(rows, name="rows"), mlflow_numpy(np.asarray(rows), name="rows"))


def test_a_sparse_matrix_is_described_as_its_dense_array_without_making_it_dense():
    S = sp.random(40_000, 50, density=0.01, format="csr", random_state=0)
    ours = describe(S)
    same_as_mlflow(ours, mlflow_numpy(S.toarray()))
    same_as_mlflow(describe(S.tocsc()), mlflow_numpy(S.toarray()))
    head = datasets._Sample.take(S)
    assert head.features.shape[0] == DIGEST_ROWS // 50  # only the rows the digest reads are copied


def test_a_dataframe_is_described_as_mlflow_does(rng):
    n = 25_000
    df = pd.DataFrame({"a": rng.normal(size=n), "b": [f"s{i}" for i in range(n)], "c": rng.integers(0, 5, n),
                       "d": rng.normal(size=n).astype(np.float32), "flag": rng.integers(0, 2, n).astype(bool)})
    same_as_mlflow(describe(df, name="df"), mlflow_pandas(df, name="df"))


def test_dataframe_columns_mlflow_types_by_their_values():
    df = pd.DataFrame({"u8": np.array([1, 2], dtype=np.uint8), "maybe": [1.0, None], "raw": [b"a", b"b"],
                       "when": pd.to_datetime(["2020-01-01", None]), "cat": pd.Categorical(["x", "y"]),
                       "text": pd.array(["a", None], dtype="string"), "yes": [True, None]})
    ours = json.loads(describe(df).schema)["mlflow_colspec"]
    assert [(c["name"], c["type"], c["required"]) for c in ours] == [
        ("u8", "integer", True), ("maybe", "double", False), ("raw", "binary", True), ("when", "datetime", False),
        ("cat", "string", True), ("text", "string", False), ("yes", "boolean", False)]
    assert ours == json.loads(mlflow_pandas(df)["schema"])["mlflow_colspec"]


def test_a_column_mlflow_has_no_type_for_leaves_the_schema_out():
    df = pd.DataFrame({"big": np.array([1, 2], dtype=np.uint64), "x": [1.0, 2.0]})
    ours = describe(df)
    assert ours.schema is None
    assert json.loads(ours.profile) == {"num_rows": 2, "num_elements": 4}


def test_an_mlflow_dataset_is_taken_as_it_is(rng):
    df = pd.DataFrame({"a": rng.normal(size=10)})
    theirs = from_pandas(df, source=SOURCE, name="theirs")
    ours = describe(theirs)
    same_as_mlflow(ours, theirs.to_dict())
    assert describe(theirs, name="renamed").name == "renamed"


def test_data_no_dataset_is_made_of_is_refused():
    for data in ({"a": 1}, "text", 3.0, (x for x in range(3))):
        with pytest.raises(UnsupportedData):
            describe(data)
    assert issubclass(UnsupportedData, TypeError)


# -- snapshots -------------------------------------------------------------------------------
def test_a_snapshot_of_every_row_gives_the_digest_of_the_data(rng):
    X = rng.normal(size=(2_000, 4))
    y = rng.integers(0, 2, size=2_000)
    snapshot = DataSnapshot.take(X, y, max_rows=10_000)
    assert snapshot.rows is None
    assert describe(snapshot) == describe(X, targets=y)
    frame = pd.DataFrame(X, columns=list("abcd"))
    assert describe(DataSnapshot.take(frame, y, max_rows=10_000)) == describe(frame)  # y is not part of a table


def test_a_capped_snapshot_counts_every_row_and_hashes_the_rows_it_holds(rng):
    X = rng.normal(size=(50_000, 3))
    snapshot = DataSnapshot.take(X, None, max_rows=20_000)
    assert snapshot.rows is not None
    ours = describe(snapshot)
    assert json.loads(ours.profile) == {"features_shape": [50_000, 3], "features_size": 150_000,
                                        "features_nbytes": 1_200_000}
    assert ours.schema == describe(X).schema
    assert ours.digest == describe(DataSnapshot.take(X, None, max_rows=20_000)).digest  # the same data, the same digest
    assert ours.digest != describe(X).digest


# -- through a run -----------------------------------------------------------------------------
def test_log_dataset_records_the_data_as_it_was_at_the_call(rng):
    X_train = rng.normal(size=(100, 3))
    expected = describe(X_train, name="X_train")
    with autolog.start_run("with data") as run:
        assert log_dataset(run, X_train, context="train", name="X_train")
        X_train[:] = 0.0  # the user reuses the array at once: the copy taken at the call is recorded
    stored = autolog.get_run(run.run_id)
    assert [(i.dataset.name, i.dataset.digest, i.tags) for i in stored.inputs] == [
        ("X_train", expected.digest, {CONTEXT_TAG: "train"})]
    assert stored.inputs[0].dataset.schema == expected.schema


def test_the_description_is_made_on_the_logger_worker(rng, monkeypatch):
    threads = []
    original = datasets._Sample.describe

    def watched(self, name):
        threads.append(threading.current_thread().name)
        return original(self, name)

    monkeypatch.setattr(datasets._Sample, "describe", watched)
    with autolog.start_run() as run:
        log_dataset(run, rng.normal(size=(10, 2)))
        assert threads == []  # nothing computed on the calling thread
    autolog.flush()
    assert threads == ["autolog-logger"]


def test_log_datasets_off_records_nothing(rng):
    autolog.autolog(log_datasets=False, integrations=[])
    with autolog.start_run() as run:
        assert log_dataset(run, rng.normal(size=(10, 2))) is False
    assert autolog.get_run(run.run_id).inputs == []


def test_log_dataset_warns_once_for_data_it_cannot_describe(caplog):
    with autolog.start_run() as run, caplog.at_level(logging.WARNING, logger="autolog"):
        assert log_dataset(run, {"not": "data"}) is False
        assert log_dataset(run, {"again": "data"}) is False
    warnings = [r.getMessage() for r in caplog.records if "no dataset is recorded" in r.getMessage()]
    assert len(warnings) == 1 and "dict" in warnings[0]
    assert autolog.get_run(run.run_id).inputs == []


def test_autolog_log_input_names_the_callers_variable_and_keeps_one_input_per_dataset(rng):
    train_frame = pd.DataFrame({"x": rng.normal(size=50), "label": rng.integers(0, 2, 50)})
    holdout = rng.normal(size=(20, 2))
    with autolog.start_run() as run:
        autolog.log_input(train_frame)
        autolog.log_input(holdout, context="eval")
        autolog.log_input(train_frame, context="eval")  # the same dataset again: the first input stays
        autolog.log_input(holdout, context=None, name="holdout v2")
    stored = autolog.get_run(run.run_id)
    assert [(i.dataset.name, i.context) for i in stored.inputs] == [
        ("train_frame", "train"), ("holdout", "eval"), ("holdout v2", None)]
    assert stored.inputs[2].tags == {}
    with pytest.raises(TypeError):
        autolog.log_input(object())


def test_log_input_starts_a_run_when_none_is_active(rng):
    data = rng.normal(size=(5, 2))
    autolog.log_input(data)
    run = autolog.active_run()
    assert run is not None
    autolog.end_run()
    assert [i.dataset.name for i in autolog.get_run(run.run_id).inputs] == ["data"]
    assert runs.active_run() is None


# -- what training data says about itself ---------------------------------------------------------
def test_data_rows_of_arrays_frames_and_structures_of_them():
    assert datasets.data_rows(np.zeros((7, 3))) == 7
    assert datasets.data_rows(pd.DataFrame({"a": range(5)})) == 5
    assert datasets.data_rows([np.zeros((4, 2)), np.zeros((4, 1))]) == 4  # several inputs
    assert datasets.data_rows({"image": np.zeros((6, 8)), "meta": np.zeros((6,))}) == 6
    assert datasets.data_rows(([np.zeros((3, 1))],)) == 3
    assert datasets.data_rows([1.0, 2.0, 3.0]) == 3  # a plain list of numbers
    assert datasets.data_rows((1.0, 2.0)) is None
    assert datasets.data_rows(np.float32(1)) is None  # no dimension
    assert datasets.data_rows(iter([np.zeros((2, 2))])) is None  # a generator is not read
    assert datasets.data_rows([]) is None


def test_declared_batch_size_of_loaders_and_pipelines():
    class Loader:  # a torch DataLoader, Keras's PyDataset
        batch_size = 16

    class Pipeline:  # tf.data: dataset.batch(8).map(...).prefetch(...)
        def __init__(self, inner=None, batch=None):
            self._input_dataset = inner
            if batch is not None:
                self._batch_size = batch

    assert datasets.declared_batch_size(Loader()) == 16
    assert datasets.declared_batch_size(Pipeline(Pipeline(Pipeline(batch=np.int64(8))))) == 8
    assert datasets.declared_batch_size(Pipeline(Pipeline())) is None  # never batched
    bad = Pipeline(batch="unknown")
    assert datasets.declared_batch_size(bad) is None
    looped = Pipeline()
    looped._input_dataset = looped  # a chain that does not end: bounded
    assert datasets.declared_batch_size(looped) is None
    for data in (None, np.zeros((4, 2)), [np.zeros(2)], {"x": 1}):
        assert datasets.declared_batch_size(data) is None


def test_the_same_data_again_and_data_changed_in_one_element_each_get_their_own_digest(rng):
    X = rng.normal(size=(3_000, 5))
    first = describe(X).digest
    assert describe(X.copy()).digest == first  # the kept last digest: equal bytes, equal digest
    changed = X.copy()
    changed[1_999, 4] += 1.0  # one element the digest reads
    assert describe(changed).digest != first
    assert describe(X).digest == first
    assert describe(X[:, :4]).digest != first  # the same first elements, another shape


def _fresh_digest(data, targets=None):
    datasets._last_tensor_digest = datasets._LastDigest()  # nothing kept: hashed anew
    datasets._last_md5 = datasets._LastDigest()
    return describe(data, targets=targets).digest


def test_the_kept_tensor_digest_is_the_digest_hashed_anew(rng):
    X = rng.normal(size=(300, 4))
    y = (X[:, 0] > 0).astype(np.int64)
    first = describe(X, targets=y).digest
    assert first == _fresh_digest(X, targets=y)
    assert describe(X.copy(), targets=y.copy()).digest == first
    cases = [(X.astype(np.float32), y), (X, y.astype(np.int32)), (X.reshape(600, 2), np.concatenate([y, y])),
             (X.view(np.int64), y), (X, None), (X[:, ::-1], y)]
    for data, targets in cases:
        kept = describe(X, targets=y).digest, describe(data, targets=targets).digest
        assert kept == (first, _fresh_digest(data, targets))
    y[7] = 1 - y[7]  # the user's array changed in place: a new digest
    changed = describe(X, targets=y).digest
    assert changed != first and changed == _fresh_digest(X, targets=y)


def test_arrays_of_objects_are_hashed_again_each_time():
    strings = np.array(["a", "b", "c"], dtype=object)
    first = describe(strings).digest
    strings[1] = "z"  # other values in the same array
    assert describe(strings).digest != first
    assert describe(np.array(["a", "b", "c"], dtype=object)).digest == first
