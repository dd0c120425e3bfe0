"""Shared fixtures: where the read-only reference data lives, and skipping cleanly when it does not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# Runs inside 3D Slicer (imports its qt and slicer); its test imports it on Slicer's Python layer instead.
# (The Slicer tests' folder is not called "slicer": slicer-core's namespace package would import every module
# of any "slicer" folder below a sys.path entry, test files included, as part of `import slicer`.)
collect_ignore = ["slicermodule/in_slicer_check.py", "slicermodule/bench_worker.py"]
SHARED_DATA = Path(os.environ.get("LESANET_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def shared_file(relative: str) -> Path:
    """Path of a file under ../shared/data; skips the calling test with the reason when it is absent."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"reference data not present: {path} (tests read ../shared/data in place)")
    return path


@pytest.fixture
def shared_data() -> Path:
    """The ../shared/data folder; skips the test with the reason when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data folder not present: {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True, scope="session")
def _kernel_cache_in_a_temporary_folder(tmp_path_factory):
    """CPU inference measures its convolution kernels on first use and caches the choice
    (LesaNetCore.model.kernels): the suite's measurements go to a temporary folder (worker subprocesses inherit
    it), never ~/.cache, and no test depends on what an earlier run or a `lesanet tune` left there."""
    previous = os.environ.get("LESANET_CACHE_DIR")
    os.environ["LESANET_CACHE_DIR"] = str(tmp_path_factory.mktemp("lesanet-cache"))
    yield
    if previous is None:
        os.environ.pop("LESANET_CACHE_DIR", None)
    else:
        os.environ["LESANET_CACHE_DIR"] = previous
