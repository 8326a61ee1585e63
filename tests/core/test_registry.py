"""The integration registry (entry points plus run-time registration), version checks with
`packaging`, the libraries runs record derived from the registry, and what a `Patcher`
gives an integration (`when_imported` while active, `other_integration_for`, wrapping
that stops at disable).
"""

from __future__ import annotations

import importlib
import sys
import textwrap
import threading
import uuid

import pytest

import autolog
from autolog.instrument import integration as registry
from autolog.instrument.integration import Integration, available, libraries, register_integration, unregister_integration
from autolog.instrument.patching import Patcher
from autolog.provenance import environment, source

LIBRARY = '''
class Model:
    def fit(self, X):
        self.n_ = len(X)
        return self
'''

INTEGRATION = '''
import sys

from autolog.instrument.integration import Integration
from autolog.instrument.training_call import TrainingWrapper

IMPORTS_SEEN = []


class Fit(TrainingWrapper):
    integration = {name!r}

    def after(self, call):
        call.run.log_param("n", call.instance.n_)


class ToyIntegration(Integration):
    name = {name!r}
    module = {module!r}
    requires = {requires!r}

    def patch(self, patcher):
        patcher.wrap(sys.modules[{module!r}], "Model.fit", Fit())
        patcher.when_imported({module!r} + "_extra", IMPORTS_SEEN.append)
'''


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """A toy library and its integration, written to tmp_path and registered at run time."""
    made = []

    def make(requires="", lib_extra=True):
        suffix = uuid.uuid4().hex[:8]
        name, module, int_module = f"toy{suffix}", f"toylib_{suffix}", f"toylib_autolog_{suffix}"
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(LIBRARY))
        if lib_extra:
            (tmp_path / f"{module}_extra.py").write_text("VALUE = 1\n")
        (tmp_path / f"{int_module}.py").write_text(
            INTEGRATION.format(name=name, module=module, requires=requires))
        monkeypatch.syspath_prepend(str(tmp_path))
        importlib.invalidate_caches()
        register_integration(name, f"{int_module}:ToyIntegration")
        made.append((name, module, int_module))
        return name, module, int_module

    yield make
    for name, module, int_module in made:
        unregister_integration(name)
        for mod in (module, f"{module}_extra", int_module):
            sys.modules.pop(mod, None)


def test_builtins_come_from_the_entry_points():
    from importlib import metadata

    declared = {ep.name: ep.value for ep in metadata.entry_points(group=registry.ENTRY_POINT_GROUP)}
    assert declared["sklearn"] == "autolog.integrations.sklearn:SklearnIntegration"
    assert {name: available()[name] for name in declared} == declared
    assert not hasattr(registry, "BUILTIN")


def test_register_enable_train_and_unregister(toy):
    name, module, _ = toy()
    assert name in available()
    lib = importlib.import_module(module)
    original = vars(lib.Model)["fit"]
    assert name in autolog.autolog(integrations=[name])
    lib.Model().fit([1, 2])
    assert vars(lib.Model)["fit"] is not original
    (run,) = autolog.search_runs(output_format="list")
    assert run.params == {"n": "2"} and run.tags["autolog.integration"] == name

    unregister_integration(name)  # disables it too: the original is back
    assert vars(lib.Model)["fit"] is original
    assert name not in available() and name not in autolog.enabled_integrations()
    with pytest.raises(ValueError, match="unknown integration"):
        autolog.autolog(integrations=[name])


def test_a_run_time_registration_takes_the_place_of_an_entry_point(toy):
    _, _, int_module = toy()
    register_integration("sklearn", f"{int_module}:ToyIntegration")
    try:
        assert available()["sklearn"] == f"{int_module}:ToyIntegration"
    finally:
        unregister_integration("sklearn")
    assert available()["sklearn"] == "autolog.integrations.sklearn:SklearnIntegration"


@pytest.mark.parametrize("name, target", [("", "a:B"), ("x", "module_only"), ("x", ":Class"), ("x", "module:")])
def test_a_bad_registration_is_refused(name, target):
    with pytest.raises(ValueError, match="module:Class"):
        register_integration(name, target)


# -- versions, with packaging -------------------------------------------------------------------
class Lib(Integration):
    name = "lib"
    module = "lib.sub"


def requiring(requires: str) -> Integration:
    integration = Lib()
    integration.requires = requires
    return integration


def test_distribution_from_the_requirement_or_the_module():
    assert requiring("scikit-learn[alldeps]>=1.3; python_version >= '3.8'").distribution() == "scikit-learn"
    assert requiring("").distribution() == "lib"
    assert requiring("lightgbm>=4").libraries() == {"lib": "lightgbm"}
    with pytest.raises(ValueError, match="bad requirement"):
        requiring("scikit learn >= 1").distribution()


@pytest.mark.parametrize("requires, version, ok", [
    ("x>=1.3,<2", "1.5.0", True),
    ("x>=1.3,<2", "2.0", False),
    ("x>=1.3,<2", "1.2.9", False),
    ("x>=1.3", "1.6.dev0", True),  # a development build of a supported release
    ("x>=1.3", "1.4.0rc1", True),
    ("x~=1.4", "1.9.2", True),
    ("x~=1.4.0", "1.5.0", False),
    ("x!=2.0.*", "2.0.3", False),
    ("x>=1.3", "1.3.0+cpu", True),  # a local version label
    ("x>=1.3", "not-a-version", True),  # cannot be judged: let through
    ("", "0.1", True),
])
def test_supported_versions(requires, version, ok):
    assert requiring(requires).supports(version) is ok


SPECIFIERS = [">=1.3", ">=1.3,<2", "<2.2", "<=2.2", ">2.2", ">=2.2", "==2.2", "!=2.2", "==2.2.0", ">=0.14",
              " >= 1.3 , < 2 ", "", ">=2.2.0.0", "<2"]
VERSIONS = ["1.2.9", "1.3", "1.3.0", "1.5.2", "2", "2.0", "2.2", "2.2.0", "2.2.1", "2.2+cpu", "2.2.0+cu121",
            "2.1.9+cpu", "2.13.0+cpu", "0.15.0", "3.0.0", "10.0", "1.03", "2.2.0.0.1"]


@pytest.mark.parametrize("specifier", SPECIFIERS)
def test_plain_releases_are_judged_without_packaging_as_packaging_does(specifier):
    """autolog() judges the common case (plain releases, a local label) itself, not to import
    packaging; every verdict is packaging's."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    requirement = registry._requirement("x" + specifier)
    assert isinstance(requirement.specifier, registry._ReleaseSpecifier)
    for version in VERSIONS:
        expected = SpecifierSet(specifier).contains(Version(version), prereleases=True)
        assert requirement.specifier.contains(version) is expected, (specifier, version)
        assert requiring("x" + specifier).supports(version) is expected


@pytest.mark.parametrize("requires, version", [
    ("x>=1.3", "1.4.0rc1"), ("x>=1.3", "1.6.dev0"), ("x>=1.3", "1.6.post1"), ("x>=1.3", "1!1.0"), ("x>=1.3", "v1.4"),
    ("x>=1.3", "1.4.0+CPU"), ("x>=1.3", " 1.4"), ("x~=1.4", "1.9"), ("x==1.3.*", "1.3.2"), ("x>=1.3rc1", "1.3"),
    ("x===1.3", "1.3"), ("x>=1.3", "not-a-version"),
])
def test_anything_else_goes_to_packaging(requires, version):
    requirement = registry._requirement(requires)
    if isinstance(requirement.specifier, registry._ReleaseSpecifier):
        assert requirement.specifier.contains(version) is None
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    try:
        expected = SpecifierSet(requires[1:]).contains(Version(version), prereleases=True)
    except InvalidVersion:
        expected = True  # cannot be judged: let through
    assert requiring(requires).supports(version) is expected


def test_an_unsupported_version_is_skipped_or_refused(toy, contained_errors):
    name, _, _ = toy(requires="pytest>=999")
    with pytest.raises(RuntimeError, match="supports pytest>=999"):
        autolog.autolog(integrations=[name])
    assert name not in autolog.autolog()


# -- the libraries runs record --------------------------------------------------------------------
def test_libraries_come_from_the_registered_integrations(toy):
    found = libraries()
    assert found["sklearn"] == "scikit-learn" and found["statsmodels"] == "statsmodels"
    name, module, _ = toy(requires="pytest>=7")
    assert libraries()[module] == "pytest"  # registering is enough: no table in the core
    assert source.libraries()[module] == "pytest" and source.libraries()["numpy"] == "numpy"
    importlib.import_module(module)
    from importlib import metadata

    assert source.library_versions()["autolog.library.pytest"] == metadata.version("pytest")
    assert "pytest" in environment.imported_frameworks()
    unregister_integration(name)
    assert module not in libraries()


def test_an_integration_that_cannot_be_loaded_is_left_out_of_libraries():
    register_integration("broken", "no_such_module_anywhere:Nothing")
    try:
        found = libraries()
        assert "sklearn" in found and "no_such_module_anywhere" not in found
    finally:
        unregister_integration("broken")


# -- what the patcher gives an integration ------------------------------------------------------
def test_when_imported_fires_after_the_import_and_never_after_disable(toy):
    name, module, int_module = toy()
    autolog.autolog(integrations=[name])
    importlib.import_module(module)  # patch() runs now and registers the hook for <module>_extra
    seen = importlib.import_module(int_module).IMPORTS_SEEN
    assert seen == []
    extra = importlib.import_module(f"{module}_extra")
    assert seen == [extra]

    autolog.autolog(disable=True)
    del sys.modules[f"{module}_extra"]
    importlib.import_module(f"{module}_extra")  # imported again: the old patcher's callback is gone
    assert seen == [extra]

    autolog.autolog(integrations=[name])  # a new patcher: the module is imported, so it fires at once
    assert len(seen) == 2 and seen[1] is sys.modules[f"{module}_extra"]


def test_when_imported_of_a_reverted_patcher_does_nothing_and_errors_are_contained(contained_errors):
    fired = []
    patcher = Patcher("toy")
    patcher.when_imported("json", fired.append)  # imported already: now
    assert fired == [sys.modules["json"]]
    patcher.when_imported("json", lambda module: 1 / 0)
    assert [type(e) for _, e in contained_errors] == [ZeroDivisionError]
    patcher.revert()
    patcher.when_imported("json", fired.append)
    assert len(fired) == 1


def test_wrap_after_revert_does_nothing():
    class Thing:
        def go(self):
            return "went"

    patcher = Patcher("toy")
    assert patcher.wrap(Thing, "go", lambda wrapped, instance, args, kwargs: "wrapped")
    assert Thing().go() == "wrapped"
    patcher.revert()
    assert patcher.wrap(Thing, "go", lambda wrapped, instance, args, kwargs: "wrapped") is False
    assert "go" in vars(Thing) and Thing().go() == "went" and patcher.patches == []


def test_lazy_wrapping_racing_a_disable_leaves_no_patch_behind():
    classes = [type(f"C{i}", (), {"fit": lambda self: i}) for i in range(300)]
    originals = [vars(cls)["fit"] for cls in classes]
    patcher = Patcher("toy")
    start = threading.Barrier(2)

    def wrap_all():
        start.wait(10)
        for cls in classes:
            patcher.wrap(cls, "fit", lambda wrapped, instance, args, kwargs: wrapped(*args, **kwargs))

    thread = threading.Thread(target=wrap_all)
    thread.start()
    start.wait(10)
    patcher.revert()
    thread.join(30)
    assert [vars(cls)["fit"] for cls in classes] == originals


def test_other_integration_for_names_an_enabled_integration_of_that_library(toy):
    pytest.importorskip("sklearn")
    from autolog.instrument.integration import engine

    name, module, _ = toy()
    autolog.autolog(integrations=["sklearn", name])
    patcher = engine.patched()["sklearn"]
    assert patcher.other_integration_for(f"{module}.sklearn_api") == name
    assert patcher.other_integration_for("sklearn.linear_model") is None
    assert patcher.other_integration_for("my_project.models") is None
