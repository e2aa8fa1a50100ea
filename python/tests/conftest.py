"""Shared fixtures: the shared data folder, the `nasrank` executable the values are
compared with, and a small network that keeps every score fast."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A network small enough that every score of several archs takes seconds on 2 cores; the
# comparison with the CLI holds at any size (the same run layer computes both).
SMALL = dict(channels=4, cells=1, batch=8)


def under_ci() -> bool:
    return os.environ.get("CI") not in (None, "", "0", "false")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (or $NASRANK_DATA); a skip outside CI when it is missing, a failure
    under CI."""
    path = Path(os.environ.get("NASRANK_DATA", ROOT.parent / "shared" / "data"))
    if not (path / "nb201" / "archs.csv").is_file():
        message = f"{path}: the shared data folder is missing"
        if under_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def cli() -> Path:
    """The `nasrank` executable: $NASRANK_BIN, else target/release/nasrank, else one built
    here with cargo."""
    if "NASRANK_BIN" in os.environ:
        return Path(os.environ["NASRANK_BIN"])
    release = ROOT / "target" / "release" / "nasrank"
    if not release.is_file():
        if shutil.which("cargo") is None:
            pytest.fail("no nasrank executable: set NASRANK_BIN or build with cargo build --release")
        subprocess.run(["cargo", "build", "--release", "--bin", "nasrank"], cwd=ROOT, check=True)
    return release
