"""Every test session keeps hcam's caches (hcam.processing.cache) in a folder of its own, never the user's."""

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def hermetic_hcam_cache(tmp_path_factory):
    """HCAM_CACHE -> a fresh temporary folder for the whole session (subprocesses inherit it); a test that needs a
    cache of its own sets HCAM_CACHE again (monkeypatch.setenv)."""
    before = os.environ.get("HCAM_CACHE")
    os.environ["HCAM_CACHE"] = str(tmp_path_factory.mktemp("hcam_cache"))
    yield os.environ["HCAM_CACHE"]
    if before is None:
        os.environ.pop("HCAM_CACHE", None)
    else:
        os.environ["HCAM_CACHE"] = before
