"""Found by the fuzz campaign: restoring a file whose name plus ".mailpreflight-backup" exceeds 255 bytes was an
internal error (ENAMETOOLONG from lstat of the backup name); it is one line saying what to do."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from mailpreflight.access.safewrite import lstat_in
from mailpreflight.errors import MailpreflightError


def test_a_name_too_long_for_the_file_system_is_an_error_with_a_fix(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert lstat_in(fd, "missing") is None
        with pytest.raises(MailpreflightError, match=r"longer than the file system allows \(271 bytes\)") as raised:
            lstat_in(fd, "z" * 250 + ".mailpreflight-backup")
        assert raised.value.hint == "rename the file to a shorter name"
        assert isinstance(raised.value.__cause__, OSError) and raised.value.__cause__.errno == errno.ENAMETOOLONG
    finally:
        os.close(fd)
