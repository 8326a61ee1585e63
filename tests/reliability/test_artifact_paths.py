"""Where logged files may go, and what a logged folder may pull in (hole 12c)."""

from __future__ import annotations

import os

import pytest

import autolog

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("bad", ["/etc", "/abs/model", "C:/x", "a/../../b", ".."])
def test_an_absolute_or_escaping_artifact_path_is_refused(tmp_path, bad):
    f = tmp_path / "f.txt"
    f.write_text("x")
    with autolog.start_run():
        with pytest.raises(ValueError, match="relative"):
            autolog.log_artifact(str(f), artifact_path=bad)


def test_a_link_out_of_a_logged_folder_is_not_followed(tmp_path, store, contained_errors):
    outside = tmp_path / "secret.txt"
    outside.write_text("outside the folder")
    folder = tmp_path / "logged"
    folder.mkdir()
    (folder / "kept.txt").write_text("inside")
    (folder / "inner.txt").symlink_to(folder / "kept.txt")  # a link inside the folder: kept
    (folder / "leak.txt").symlink_to(outside)
    with autolog.start_run() as run:
        autolog.log_artifacts(str(folder), artifact_path="files")
    autolog.flush()
    root = store()._artifact_dir(run.run_id)
    names = sorted(os.listdir(os.path.join(root, "files")))
    assert names == ["inner.txt", "kept.txt"], names


def test_load_model_calls_only_an_integrations_loader(tmp_path):
    """A model folder is data: the loader its MLmodel file names must be a known
    integration's load_model (a crafted folder naming os:system is refused)."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "MLmodel").write_text(f"autolog:\n  loader: os:system\nflavors: {{}}\n")
    with pytest.raises(ValueError, match="refused"):
        autolog.load_model(str(folder))
