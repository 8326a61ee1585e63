"""statsmodels: every `fit` (and `fit_regularized`) of a `statsmodels.base.model.Model` subclass.

What a fit logs (docs/integrations/statsmodels.md):
- params: the fit's arguments with their defaults (method, maxiter, cov_type, ...), the model
  class, the formula of a `from_formula` model, nobs, and the model's specification where it
  has one (GLM family and link, ARIMA/SARIMAX order, seasonal_order, trend);
- metrics: every scalar statistic of the results (aic, bic, llf, rsquared, fvalue, ...);
- artifacts: `coefficients.csv` (coefficients, standard errors, test statistics, p-values,
  confidence intervals) and `model_summary.txt` (`results.summary()`);
- the model: the results object under `model/`, in MLflow's statsmodels format
  (`model.statsmodels`, a pickle as `results.save()` writes it).

Patching is lazy, so that `import statsmodels.api` costs next to nothing more: when
`statsmodels.base.model` is imported, the `fit` methods of the model classes defined so
far are wrapped, and `Model.__init__` is wrapped so that a class defined later (in a
statsmodels module imported later, or the user's own subclass) gets its `fit` wrapped when
its first instance is made, before anyone can call `fit` on it.

On the training thread a fit costs one `pickle.dumps` of the results (the consistent
snapshot: the user may change their arrays or the results right after); the statistics,
the tables, the summary and the model file are made from that copy on the logger's worker.
"""

from __future__ import annotations

import csv
import io
import os
import pickle
import weakref
from typing import Any, Mapping, Optional

from autolog import runs
from autolog.instrument import containment
from autolog.instrument.datasets import log_dataset
from autolog.instrument.integration import Integration
from autolog.instrument.models import ModelFlavor, log_model, read_mlmodel
from autolog.instrument.params import is_scalar_number
from autolog.instrument.patching import Patcher
from autolog.instrument.training_call import Call, TrainingWrapper

NAME = "statsmodels"
MODEL_DATA = "model.statsmodels"  # the file name mlflow.statsmodels reads
FIT_METHODS = ("fit", "fit_regularized")

# Scalar statistics that results classes compute on demand (cached attributes); each one
# found on a results object is logged under its own name, as mlflow.statsmodels does.
STATISTICS = (
    "aic", "aicc", "bic", "bic_deviance", "bic_llf", "hqic",
    "llf", "llnull", "llr", "llr_pvalue", "prsquared",
    "rsquared", "rsquared_adj", "fvalue", "f_pvalue",
    "ess", "ssr", "centered_tss", "uncentered_tss", "mse_model", "mse_resid", "mse_total",
    "condition_number", "scale", "deviance", "null_deviance", "pearson_chi2",
    "df_model", "df_resid", "nobs", "nobs_effective", "mae", "mse", "sse",
)
# Numbers on results objects that describe the model's shape, not its fit.
NOT_STATISTICS = frozenset({"J", "K", "neqs", "k_constant", "k_diffuse_states", "loglikelihood_burn", "nobs_diffuse", "use_t"})
# What a model's specification is called on the model object (logged as params when present).
SPECIFICATION = ("order", "seasonal_order", "trend")


class StatsmodelsIntegration(Integration):
    name = NAME
    module = "statsmodels"
    requires = "statsmodels>=0.14"

    def patch(self, patcher: Patcher) -> None:
        # statsmodels' package import is tiny; its model classes load with statsmodels.api & co.
        patcher.when_imported("statsmodels.base.model", ModelClasses(patcher).adopt_all)

    def model_flavor(self, model: Any) -> Optional[StatsmodelsFlavor]:
        """Fitted results (what `fit()` returns), as the integration logs them."""
        from statsmodels.base.model import Results
        from statsmodels.base.wrapper import ResultsWrapper

        return FLAVOR if isinstance(model, (Results, ResultsWrapper)) else None


# -- finding and wrapping the model classes ------------------------------------------------
class ModelClasses:
    """The model classes one enabling of the integration has looked at, its patcher, and the
    fit wrapper. (The patcher makes wrapping safe against a concurrent disable: after it is
    reverted, `wrap` does nothing.)"""

    def __init__(self, patcher: Patcher):
        self.patcher = patcher
        self.fit = Fit()
        self.seen: "weakref.WeakSet[type]" = weakref.WeakSet()
        self.base: Optional[type] = None

    def adopt_all(self, module: Any) -> None:
        """Wrap `Model.__init__` and the fit methods of every model class defined so far."""
        self.base = module.Model
        self.patcher.wrap(self.base, "__init__", self._on_init)
        stack = [self.base]
        while stack:
            cls = stack.pop()
            self.adopt(cls)
            stack.extend(cls.__subclasses__())

    def adopt(self, cls: type) -> None:
        """Wrap the `fit` methods that instances of `cls` call (the class that defines each)."""
        if cls in self.seen or not self.patcher.active:
            return
        for method in FIT_METHODS:
            owner = next((c for c in cls.__mro__ if method in vars(c)), None)
            if owner is not None and issubclass(owner, self.base):
                self.patcher.wrap(owner, method, self.fit)
        self.seen.add(cls)

    def _on_init(self, wrapped, instance, args, kwargs):
        cls = type(instance)
        if cls not in self.seen:
            with containment.contained(f"{NAME}: wrapping {cls.__qualname__}.fit"):
                self.adopt(cls)
        return wrapped(*args, **kwargs)


# -- one fit -------------------------------------------------------------------------------
class Fit(TrainingWrapper):
    """`fit` / `fit_regularized` of a model: params before the call, results after it."""

    integration = NAME
    bind_defaults = True

    def should_log(self, call: Call) -> bool:
        return call.instance is not None

    def before(self, call: Call) -> None:
        call.run.log_params(_params(call), normalize=True)

    def after(self, call: Call) -> None:
        run, results = call.run, call.result
        if "nobs" not in run.params and is_scalar_number(getattr(results, "nobs", None)):
            run.log_param("nobs", _integral(results.nobs), normalize=True)  # discrete models set it in fit
        _log_training_data(run, call.instance)
        _log_results(run, results)


def _log_training_data(run, model: Any) -> None:
    """The model's exog (features) and endog (target) as the run's training dataset."""
    exog, endog = getattr(model, "exog", None), getattr(model, "endog", None)
    if exog is None and endog is None:
        return
    with containment.contained(f"{NAME}: recording the training dataset"):
        log_dataset(run, exog if exog is not None else endog,
                    targets=endog if exog is not None else None, context="train")


def _params(call: Call) -> dict:
    """The fit's arguments with their defaults, then what the model says about itself."""
    try:
        params = dict(call.arguments)
    except TypeError:  # the call itself is wrong; fit will say so
        params = {}
    instance = call.instance
    model = type(instance)
    params["model_class"] = f"{model.__module__}.{model.__qualname__}"
    formula = getattr(instance, "formula", None)
    if isinstance(formula, str):
        params["formula"] = formula
    nobs = getattr(instance, "nobs", None)
    if is_scalar_number(nobs):
        params["nobs"] = _integral(nobs)
    family = getattr(instance, "family", None)
    if family is not None and hasattr(family, "link"):
        params["family"] = type(family).__name__
        params["link"] = type(family.link).__name__
    for name in SPECIFICATION:
        value = getattr(instance, name, None)
        if value is not None and isinstance(value, (str, int, tuple)):
            params[name] = value
    return params


def _log_results(run, results: Any) -> None:
    if not _is_results(results):
        return  # e.g. ARIMA.fit(return_params=True) returns an array
    try:
        snapshot: Optional[bytes] = pickle.dumps(results, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # noqa: BLE001 - the user's model holds something unpicklable
        containment.warn_once(f"{NAME} pickle {type(results).__name__}",
                              "%s results cannot be pickled (%s): no model is logged, and the statistics "
                              "are read from the results object itself", type(results).__name__, exc)
        snapshot = None
    s = runs.settings()
    if snapshot is not None and s.log_models:
        log_model(run, snapshot, FLAVOR, max_size_mb=s.max_model_size_mb)
    # the user's own object is read only when no copy can be made (see _log_statistics)
    run.defer(lambda: _log_statistics(run, snapshot, results),
              label=f"statsmodels statistics of run {run.run_id}")


def _is_results(value: Any) -> bool:
    return hasattr(value, "params") and hasattr(value, "model")


# -- on the worker: statistics, tables, summary -------------------------------------------------
def _log_statistics(run, snapshot: Optional[bytes], original: Any) -> None:
    results = original
    if snapshot is not None:
        try:
            results = _unpickle(snapshot)
        except Exception:  # noqa: BLE001 - a formula calling a function of the user's: the
            pass  # copy cannot rebuild its design matrix, so read the statistics from the original
    run.log_metrics(statistics(results), normalize=True)
    table = coefficient_table(results)
    if table:
        run.log_text(table, "coefficients.csv")
    summary = _summary_text(results)
    if summary:
        run.log_text(summary, "model_summary.txt")


def statistics(results: Any) -> dict[str, float]:
    """Every scalar statistic of `results`: the known ones, and the numbers already on it."""
    inner = getattr(results, "_results", results)
    found: dict[str, float] = {}
    for name in STATISTICS:
        try:
            value = getattr(inner, name)
        except Exception:  # noqa: BLE001 - not defined for this model (e.g. rsquared of a GLM)
            continue
        if is_scalar_number(value):
            found[name] = float(value)
    for source in (vars(inner), getattr(inner, "_cache", None) or {}):
        for name, value in source.items():
            if name.startswith("_") or name in found or name in NOT_STATISTICS or name.startswith("k_"):
                continue
            if is_scalar_number(value):
                found[name] = float(value)
    retvals = getattr(inner, "mle_retvals", None)
    if isinstance(retvals, dict):
        for name in ("converged", "iterations"):
            if name in retvals and (is_scalar_number(retvals[name]) or isinstance(retvals[name], bool)):
                found[name] = float(retvals[name])
    return found


def _integral(number: Any) -> Any:
    return int(number) if float(number).is_integer() else float(number)


def coefficient_table(results: Any) -> str:
    """CSV of the coefficients: term, coef, std_err, statistic (t or z), p_value, conf_low, conf_high."""
    import numpy as np

    params = getattr(results, "params", None)
    if params is None:
        return ""
    if isinstance(params, Mapping):  # ExponentialSmoothing: named values and arrays, no standard errors
        return _parameter_list(params)
    coef = np.asarray(params, dtype=float)
    names = _term_names(results, params, coef)
    columns = {"coef": coef}
    use_t = bool(getattr(results, "use_t", False))
    for column, attribute in (("std_err", "bse"), ("t" if use_t else "z", "tvalues"), ("p_value", "pvalues")):
        values = _optional_array(lambda a=attribute: getattr(results, a), coef.shape)
        if values is not None:
            columns[column] = values
    interval = _optional_array(lambda: results.conf_int(), coef.shape + (2,))
    if interval is None and coef.ndim == 2:  # MNLogit: one (terms, 2) block per equation
        interval = _optional_array(lambda: results.conf_int(), (coef.shape[1], coef.shape[0], 2))
        interval = None if interval is None else interval.transpose(1, 0, 2)
    if interval is not None:
        columns["conf_low"], columns["conf_high"] = interval[..., 0], interval[..., 1]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["term", *columns])
    flat = {k: v.reshape(-1) for k, v in columns.items()}
    for i, name in enumerate(names):
        writer.writerow([name, *(repr(float(v[i])) for v in flat.values())])
    return out.getvalue()


def _parameter_list(params: Mapping) -> str:
    import numpy as np

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["term", "coef"])
    for name, value in params.items():
        try:
            values = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            continue  # e.g. a flag such as use_boxcox=False
        if values.ndim == 0:
            writer.writerow([name, repr(float(values))])
        else:
            for i, v in enumerate(values.reshape(-1)):
                writer.writerow([f"{name}[{i}]", repr(float(v))])
    return out.getvalue()


def _term_names(results: Any, params: Any, coef) -> list[str]:
    index = getattr(params, "index", None)
    model = getattr(results, "model", None)
    if coef.ndim == 1:
        return _names((index, getattr(model, "param_names", None), getattr(model, "exog_names", None)), coef.size, "x")
    # 2-D (MNLogit, VAR): one row per (term, equation)
    rows = _names((index, getattr(model, "exog_names", None)), coef.shape[0], "x")
    cols = _names((getattr(params, "columns", None), getattr(model, "endog_names", None)), coef.shape[1], "")
    return [f"{r}[{c}]" for r in rows for c in cols]


def _names(candidates: tuple, size: int, prefix: str) -> list[str]:
    """The first candidate list of `size` names, else prefix0, prefix1, ..."""
    for names in candidates:
        if names is not None and not isinstance(names, str) and len(names) == size:
            return [str(n) for n in names]
    return [f"{prefix}{i}" for i in range(size)]


def _optional_array(get, shape):
    import numpy as np

    try:
        value = np.asarray(get(), dtype=float)
    except Exception:  # noqa: BLE001 - not defined for this results class
        return None
    return value if value.shape == shape else None  # never reshape: that could pair wrong values


def _summary_text(results: Any) -> str:
    summary = getattr(results, "summary", None)
    if summary is None:
        return ""
    try:
        made = summary()
    except NotImplementedError:
        return ""
    return made.as_text() if hasattr(made, "as_text") else str(made)


# -- the model ---------------------------------------------------------------------------------
class StatsmodelsFlavor(ModelFlavor):
    """The results object pickled as `results.save()` does, where `mlflow.statsmodels` looks for it."""

    name = NAME
    library = "statsmodels"
    loader = "autolog.integrations.statsmodels:load_model"

    def snapshot(self, model: Any) -> bytes:
        if isinstance(model, bytes):
            return model  # the integration pickles once, for the model and its statistics
        return pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)

    def save(self, snapshot: bytes, path: str) -> dict:
        import statsmodels

        with open(os.path.join(path, MODEL_DATA), "wb") as fh:
            fh.write(snapshot)
        return {
            "python_function": {"loader_module": "mlflow.statsmodels", "data": MODEL_DATA},
            NAME: {"statsmodels_version": statsmodels.__version__, "data": MODEL_DATA, "code": None},
        }


FLAVOR = StatsmodelsFlavor()


def load_model(folder: str) -> Any:
    """The results object of a model folder written by this flavor (or by mlflow.statsmodels)."""
    flavor = (read_mlmodel(folder).get("flavors") or {}).get(NAME) or {}
    with open(os.path.join(folder, flavor.get("data", MODEL_DATA)), "rb") as fh:
        return _unpickle(fh.read())


def _unpickle(data: bytes) -> Any:
    # Unpickling a formula model evaluates the formula again, looking its names up in the
    # calling frames (statsmodels' Data.__setstate__ tries a few depths, this frame among
    # them): give formulas such as "np.log(x)" the names they are usually written with.
    import numpy as np  # noqa: F401
    import numpy  # noqa: F401

    return pickle.loads(data)
