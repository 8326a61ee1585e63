"""`when_imported`: autolog's own post-import hooks (autolog/instrument/patching.py), on real
imports of real modules written to tmp_path, and on scikit-learn in a fresh interpreter.

The promises: a callback runs right after the module's code (or at once when the module is
imported already), once per execution of the module (an import, an import after it was
taken out of sys.modules, a reload); the module keeps its own loader; a module imported by
another module's callback gets its own callbacks; threads importing a watched module at
once all get it after its callbacks ran, which ran once; other finders, namespace packages
and `importlib.reload` work as without autolog; `forget` stops a callback, and a module no
callback waits for is imported untouched. And `import autolog; autolog.autolog()` imports
neither wrapt nor what wrapt imports (asyncio, importlib.metadata) until something is patched.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.resources
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import threading
import uuid

import pytest

from autolog.instrument.patching import forget, when_imported


@pytest.fixture
def modules(tmp_path, monkeypatch):
    """Write modules and packages under tmp_path (on sys.path); watch them with `watch`, which
    records every callback as (module name, module). All forgotten and unimported after the test."""

    class Modules:
        def __init__(self):
            self.prefix = f"hooked_{uuid.uuid4().hex[:8]}"
            self.calls: list = []
            self.watched: list = []

        def write(self, relative: str, code: str = "") -> None:
            path = tmp_path / relative.replace("<p>", self.prefix)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(code).replace("<p>", self.prefix))
            importlib.invalidate_caches()

        def name(self, dotted: str) -> str:
            return dotted.replace("<p>", self.prefix)

        def watch(self, dotted: str, callback=None) -> None:
            name = self.name(dotted)
            callback = callback or (lambda module, name=name: self.calls.append((name, module)))
            self.watched.append((name, callback))
            when_imported(name, callback)

        def names_called(self) -> list:
            return [name for name, _ in self.calls]

    made = Modules()
    monkeypatch.syspath_prepend(str(tmp_path))
    yield made
    for name, callback in made.watched:
        forget(name, callback)
    for name in [n for n in sys.modules if n.startswith(made.prefix)]:
        del sys.modules[name]


def test_a_callback_runs_after_the_modules_code_and_at_once_when_it_is_imported(modules):
    modules.write("<p>.py", """
        STEPS = ["start"]
        def fit():
            return "fitted"
        STEPS.append("end")
    """)
    seen_at_call = []
    modules.watch("<p>", lambda module: seen_at_call.append(list(module.STEPS)))
    modules.watch("<p>")
    assert modules.calls == [] and seen_at_call == []

    module = importlib.import_module(modules.name("<p>"))
    assert seen_at_call == [["start", "end"]]  # the module's code had run to its end
    assert modules.calls == [(modules.name("<p>"), module)]
    # the module keeps its own loader, as without autolog
    assert type(module.__loader__) is importlib.machinery.SourceFileLoader
    assert module.__spec__.loader is module.__loader__ and module.__file__.endswith(".py")

    importlib.import_module(modules.name("<p>"))  # imported already: nothing runs again
    assert len(modules.calls) == 1
    late = []
    when_imported(modules.name("<p>"), late.append)  # registered after the import: runs now
    modules.watched.append((modules.name("<p>"), late.append))
    assert late == [module] and len(modules.calls) == 1


def test_each_execution_of_the_module_runs_its_callbacks_until_forget(modules):
    modules.write("<p>.py", "RUNS = []\nRUNS.append(1)\n")
    modules.watch("<p>")
    first = importlib.import_module(modules.name("<p>"))
    del sys.modules[modules.name("<p>")]
    second = importlib.import_module(modules.name("<p>"))  # imported again
    assert second is not first and [m for _, m in modules.calls] == [first, second]
    reloaded = importlib.reload(second)
    assert reloaded is second and [m for _, m in modules.calls] == [first, second, second]
    assert type(second.__spec__.loader) is importlib.machinery.SourceFileLoader

    name, callback = modules.watched[0]
    forget(name, callback)
    del sys.modules[name]
    # no callback waits for it any more: autolog's finder lets it through untouched
    assert type(importlib.util.find_spec(name).loader) is importlib.machinery.SourceFileLoader
    third = importlib.import_module(name)
    assert len(modules.calls) == 3 and type(third.__loader__) is importlib.machinery.SourceFileLoader


def test_the_spec_found_before_the_import_is_the_modules_own_but_for_running_it(modules):
    modules.write("<p>/__init__.py", "")
    modules.write("<p>/data.txt", "some data")
    modules.watch("<p>")
    spec = importlib.util.find_spec(modules.name("<p>"))
    assert isinstance(spec.loader, importlib.machinery.SourceFileLoader)
    assert spec.loader.is_package(modules.name("<p>"))
    assert spec.loader.get_filename(modules.name("<p>")) == spec.origin
    package = importlib.import_module(modules.name("<p>"))
    assert importlib.resources.files(package).joinpath("data.txt").read_text() == "some data"


def test_submodules_and_modules_imported_by_another_modules_callback(modules):
    modules.write("<p>/__init__.py", "from . import inner\nDONE = True\n")
    modules.write("<p>/inner.py", "")
    modules.write("<p>/extra.py", "")
    order = []

    def on_package(package):
        order.append(("package", package.DONE))
        importlib.import_module(modules.name("<p>.extra"))  # imported inside a callback
        order.append(("package callback ends", None))

    modules.watch("<p>", on_package)
    modules.watch("<p>.inner", lambda module: order.append(("inner", None)))
    modules.watch("<p>.extra", lambda module: order.append(("extra", None)))
    importlib.import_module(modules.name("<p>"))
    assert order == [("inner", None), ("package", True), ("extra", None), ("package callback ends", None)]


def test_a_failing_callback_is_contained_and_the_others_still_run(modules, contained_errors):
    modules.write("<p>.py", "VALUE = 1\n")
    modules.watch("<p>", lambda module: 1 / 0)
    modules.watch("<p>")
    module = importlib.import_module(modules.name("<p>"))
    assert module.VALUE == 1 and modules.calls == [(modules.name("<p>"), module)]
    assert [type(exc) for _, exc in contained_errors] == [ZeroDivisionError]


def test_a_module_whose_code_raises_runs_no_callback(modules):
    modules.write("<p>.py", "raise RuntimeError('broken library')\n")
    modules.watch("<p>")
    with pytest.raises(RuntimeError, match="broken library"):
        importlib.import_module(modules.name("<p>"))
    assert modules.calls == [] and modules.name("<p>") not in sys.modules


def test_namespace_packages_are_as_without_a_callback(modules):
    for part in ("watched", "plain"):
        modules.write(f"<p>_{part}/mod.py", "X = 1\n")  # no __init__.py: namespace packages
        modules.write(f"<p>_{part}/data.txt", "namespace data")
    modules.watch("<p>_watched")
    modules.watch("<p>_watched.mod")
    watched = importlib.import_module(modules.name("<p>_watched"))
    plain = importlib.import_module(modules.name("<p>_plain"))
    assert modules.names_called() == [modules.name("<p>_watched")]

    def shape(package):
        return (package.__file__, type(package.__loader__), package.__spec__.loader is package.__loader__,
                package.__spec__.origin, len(package.__path__), sorted(vars(package)))

    assert shape(watched) == shape(plain)
    assert type(plain.__loader__).__name__ == "NamespaceLoader"
    assert importlib.resources.files(watched).joinpath("data.txt").read_text() == "namespace data"
    mod = importlib.import_module(modules.name("<p>_watched.mod"))
    assert mod.X == 1 and modules.names_called()[-1] == modules.name("<p>_watched.mod")
    importlib.import_module(modules.name("<p>_plain.mod"))
    assert importlib.reload(watched) is watched and shape(watched) == shape(plain)


class _VirtualFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Another library's finder: serves modules that exist in no file."""

    def __init__(self, names):
        self.names = names
        self.asked: list = []

    def find_spec(self, fullname, path=None, target=None):
        self.asked.append(fullname)
        if fullname in self.names:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        module.SERVED_BY = self


def test_other_finders_before_and_after_it(modules, monkeypatch):
    behind = _VirtualFinder({modules.name("<p>_behind")})
    modules.watch("<p>_behind")
    modules.watch("<p>_before")
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    sys.meta_path.append(behind)  # after autolog's finder and the path finder
    module = importlib.import_module(modules.name("<p>_behind"))
    assert module.SERVED_BY is behind and module.__loader__ is behind and module.__spec__.loader is behind
    assert modules.calls == [(modules.name("<p>_behind"), module)]

    before = _VirtualFinder({modules.name("<p>_before")})
    sys.meta_path.insert(0, before)  # in front of autolog's: it answers first, no callback
    module = importlib.import_module(modules.name("<p>_before"))
    assert module.SERVED_BY is before and len(modules.calls) == 1
    with pytest.raises(ModuleNotFoundError):  # a watched name nobody serves is still not found
        importlib.import_module(modules.name("<p>_nowhere_behind"))


def test_a_finder_behind_that_asks_the_import_system_again(modules, monkeypatch):
    """A finder that calls importlib.util.find_spec for the name it is asked about gets no answer
    from autolog's finder the second time (no endless recursion), and the import proceeds."""
    modules.write("<p>.py", "VALUE = 1\n")
    modules.watch("<p>")
    asked = []

    class Asking(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path=None, target=None):
            if fullname == modules.name("<p>") and not asked:
                asked.append(fullname)
                importlib.util.find_spec(fullname)
            return None

    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    index = next(i for i, f in enumerate(sys.meta_path) if type(f).__name__ == "_PostImportFinder")
    sys.meta_path.insert(index + 1, Asking())
    module = importlib.import_module(modules.name("<p>"))
    assert asked and module.VALUE == 1 and modules.calls == [(modules.name("<p>"), module)]


def test_threads_importing_at_once_all_get_the_module_after_its_callbacks(modules):
    modules.write("<p>_gate.py", "import threading\nIN_CODE = threading.Event()\nGO = threading.Event()\n")
    modules.write("<p>.py", """
        import <p>_gate
        <p>_gate.IN_CODE.set()
        <p>_gate.GO.wait(60)
        PATCHED = False
    """)
    gate = importlib.import_module(modules.name("<p>_gate"))

    def patch(module):
        module.PATCHED = True

    modules.watch("<p>", patch)
    modules.watch("<p>")
    seen, errors = [], []
    start = threading.Barrier(9)

    def importer():
        try:
            start.wait(60)
            seen.append(importlib.import_module(modules.name("<p>")).PATCHED)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=importer) for _ in range(8)]
    for thread in threads:
        thread.start()
    start.wait(60)
    assert gate.IN_CODE.wait(60)  # one thread runs the module's code; the others wait for it or start later
    gate.GO.set()
    for thread in threads:
        thread.join(60)
    assert errors == [] and seen == [True] * 8
    assert len(modules.calls) == 1  # the callbacks ran once


def test_registering_and_forgetting_from_threads_at_once(modules):
    modules.write("<p>.py", "")
    callbacks = [lambda module, i=i: modules.calls.append((i, module)) for i in range(40)]

    def register(chunk):
        for callback in chunk:
            when_imported(modules.name("<p>"), callback)
            forget(modules.name("<p>"), callback)
            when_imported(modules.name("<p>"), callback)

    threads = [threading.Thread(target=register, args=(callbacks[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    modules.watched.extend((modules.name("<p>"), c) for c in callbacks)
    module = importlib.import_module(modules.name("<p>"))
    assert sorted(i for i, _ in modules.calls) == list(range(40))
    assert all(m is module for _, m in modules.calls)


def test_after_disable_no_integrations_library_is_waited_for(modules):
    import autolog
    from autolog.instrument.integration import engine, register_integration, unregister_integration

    modules.write("<p>_lib.py", "")
    modules.write("<p>_integration.py", """
        from autolog.instrument.integration import Integration

        class Toy(Integration):
            name = "<p>"
            module = "<p>_lib"

            def patch(self, patcher):
                pass
    """)
    register_integration(modules.name("<p>"), modules.name("<p>_integration:Toy"))
    try:
        autolog.autolog(integrations=[modules.name("<p>")])
        spec = importlib.util.find_spec(modules.name("<p>_lib"))
        assert type(spec.loader) is not importlib.machinery.SourceFileLoader  # waited for
        autolog.autolog(disable=True)
        spec = importlib.util.find_spec(modules.name("<p>_lib"))
        assert type(spec.loader) is importlib.machinery.SourceFileLoader  # untouched
        autolog.autolog(integrations=[modules.name("<p>")])  # enabled again: waited for again
        assert type(importlib.util.find_spec(modules.name("<p>_lib")).loader) is not importlib.machinery.SourceFileLoader
        importlib.import_module(modules.name("<p>_lib"))
        assert modules.name("<p>") in engine.patched()  # patched by the hook at its import
    finally:
        unregister_integration(modules.name("<p>"))


# -- fresh interpreters ------------------------------------------------------------------------
def _fresh(code: str, tmp_path) -> dict:
    env = dict(os.environ, AUTOLOG_TRACKING_URI=str(tmp_path / "store"), AUTOLOG_JOURNAL_DIR=str(tmp_path / "j"),
               AUTOLOG_LOG_SYSTEM_METRICS="false")
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=str(tmp_path), env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


WRAPT_AND_ITS_IMPORTS = ("wrapt", "asyncio", "importlib.metadata")


def test_the_patching_engine_imports_wrapt_only_to_patch_what_binds(tmp_path):
    """A module's C function (sys.exit, which autolog() wraps) gets a plain function; wrapt is
    imported by the first wrap of anything else (a method, a Python function)."""
    result = _fresh(f"""
        import json, math, pickle, sys
        from autolog.instrument import integration, patching, training_call
        patching.when_imported("json", lambda module: None)
        patching.when_imported("no_such_module_xyz", lambda module: None)
        imported = {{"at first": [m for m in {WRAPT_AND_ITS_IMPORTS!r} if m in sys.modules]}}
        seen = []

        def remember(wrapped, instance, args, kwargs):
            seen.append((patching.original_of(wrapped), instance))
            return wrapped(*args, **kwargs) + 1

        floor = math.floor
        patcher = patching.Patcher("test")
        patcher.wrap(math, "floor", remember)
        imported["a C function wrapped"] = [m for m in {WRAPT_AND_ITS_IMPORTS!r} if m in sys.modules]
        builtin = {{"result": math.floor(2.5), "seen": seen == [(floor, None)], "name": math.floor.__name__,
                    "wrapped": math.floor.__wrapped__ is floor, "pickled": pickle.loads(pickle.dumps(math.floor)) is math.floor}}

        class Thing:
            def go(self):
                return 1

        patcher.wrap(Thing, "go", lambda wrapped, instance, args, kwargs: wrapped(*args, **kwargs))
        imported["a method wrapped"] = "wrapt" in sys.modules
        patcher.revert()
        builtin["put back"] = math.floor is floor
        print(json.dumps({{"imported": imported, "builtin": builtin, "go": Thing().go()}}))
    """, tmp_path)
    assert result == {"imported": {"at first": [], "a C function wrapped": [], "a method wrapped": True},
                      "builtin": {"result": 3, "seen": True, "name": "floor", "wrapped": True, "pickled": True,
                                  "put back": True},
                      "go": 1}


def test_import_autolog_and_autolog_import_no_wrapt_asyncio_or_importlib_metadata(tmp_path):
    """On the caller's thread: autolog's own threads (the run context's preparation reads
    distributions' metadata) may import what they need meanwhile."""
    result = _fresh(f"""
        import json, sys, threading

        class Seen:  # which thread imports what, without importing anything itself
            found = []

            def find_spec(self, name, path=None, target=None):
                if threading.current_thread() is threading.main_thread():
                    self.found.append(name)
                return None

        seen = Seen()
        sys.meta_path.insert(0, seen)
        import autolog
        autolog.autolog()
        print(json.dumps(sorted(m for m in {WRAPT_AND_ITS_IMPORTS!r} if m in seen.found)))
    """, tmp_path)
    assert result == []


def test_autolog_judges_plain_release_versions_without_packaging(tmp_path):
    result = _fresh("""
        import json, re, sys
        import autolog
        autolog.autolog()
        from autolog.instrument.integration import engine
        versions = [i.installed_version() for i in engine.wanted.values()]
        plain = all(v is None or re.fullmatch(r"[0-9.]+(\\+[a-z0-9.]+)?", v) for v in versions)
        print(json.dumps({"plain": plain, "packaging": "packaging" in sys.modules, "some": any(versions)}))
    """, tmp_path)
    if not result["plain"]:
        pytest.skip("an installed library has a pre-, post- or dev-release version: packaging judges it")
    assert result == {"plain": True, "packaging": False, "some": True}


def test_scikit_learn_imported_after_autolog_is_patched_and_put_back(tmp_path):
    pytest.importorskip("sklearn")
    result = _fresh("""
        import importlib.machinery, json, sys, types
        import autolog
        autolog.autolog()
        import numpy as np
        import sklearn
        from sklearn.linear_model import LogisticRegression
        model = LogisticRegression().fit(np.arange(40.0).reshape(20, 2), [0, 1] * 10)
        patched = type(vars(LogisticRegression)["fit"]) is not types.FunctionType  # wrapt's wrapper
        assert autolog.flush(60)
        runs = autolog.search_runs(output_format="list")
        loaders = {type(sklearn.__loader__), type(sklearn.__spec__.loader)}
        autolog.autolog(disable=True)
        print(json.dumps({
            "patched": patched, "runs": len(runs), "params": "C" in runs[0].params if runs else None,
            "loader": loaders == {importlib.machinery.SourceFileLoader},
            "put back": type(vars(LogisticRegression)["fit"]) is types.FunctionType,
        }))
    """, tmp_path)
    assert result == {"patched": True, "runs": 1, "params": True, "loader": True, "put back": True}
