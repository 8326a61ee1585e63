"""autolog/instrument/distributions.py reads what importlib.metadata reads, without importing it."""

from __future__ import annotations

from importlib import metadata

import pytest

from autolog.instrument import distributions


def test_the_entry_points_of_a_group_are_importlibs():
    for group in ("autolog.integrations", "console_scripts", "pytest11"):
        mine = sorted(distributions.entry_points(group))
        theirs = sorted((ep.name, ep.value) for ep in metadata.entry_points(group=group))
        assert mine == theirs, group


@pytest.mark.parametrize("name", ["scikit-learn", "scikit_learn", "statsmodels", "xgboost", "lightgbm", "torch",
                                  "pytest", "numpy", "wrapt", "packaging", "autolog", "mlflow"])
def test_versions_are_importlibs(name):
    assert distributions.version(name) == metadata.version(name)


def test_a_distribution_that_is_not_installed_has_no_version():
    assert distributions.version("no-such-distribution-xyz") is None


def test_an_entry_points_file_is_read_as_ini(tmp_path, monkeypatch):
    folder = tmp_path / "toyplugin-1.2.dist-info"
    folder.mkdir()
    (folder / "METADATA").write_text("Metadata-Version: 2.1\nName: toyplugin\nVersion: 1.2\n\nVersion: 9 (the body)\n")
    (folder / "entry_points.txt").write_text(
        "; a comment\n[console_scripts]\ntoy = toyplugin:main\n\n[autolog.integrations]\n"
        "# another\n  toy = toyplugin.integration:ToyIntegration  \n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert ("toy", "toyplugin.integration:ToyIntegration") in distributions.entry_points("autolog.integrations")
    assert distributions.version("ToyPlugin") == "1.2"
