import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
# The tests test the checkout they are in: its src/ comes first, for this process and for every
# `python -m mailpreflight` the tests start (an editable install may point at another worktree's src/).
SRC = str(Path(__file__).resolve().parents[1] / "src")
sys.path.insert(0, SRC)
os.environ["PYTHONPATH"] = os.pathsep.join([SRC, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])


@pytest.fixture(autouse=True, scope="session")
def _digest_key_of_the_tests(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test reads or writes the host's /var/lib/mailpreflight/baseline.key: every snapshot, drift and restore
    of the session (subprocesses inherit it) uses a key under the session's tmp dir."""
    from mailpreflight.baseline.digestkey import KEY_PATH_ENV

    previous = os.environ.get(KEY_PATH_ENV)
    os.environ[KEY_PATH_ENV] = str(tmp_path_factory.mktemp("digestkey") / "baseline.key")
    yield
    if previous is None:
        del os.environ[KEY_PATH_ENV]
    else:
        os.environ[KEY_PATH_ENV] = previous
