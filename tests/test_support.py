"""The tests' own helpers that decide what a test sees."""

from __future__ import annotations

import shutil
import socket
import tempfile
from pathlib import Path

import pytest
from support import not_copied


def test_copies_of_the_working_tree_skip_sockets(short_tmp):
    """The tests that copy the checkout (demo, deploy) work after a portal was killed in it
    and left its scheduler.sock behind."""
    tree = short_tmp / "tree"
    (tree / "instance").mkdir(parents=True)
    (tree / "instance" / "kept.txt").write_text("kept")
    (tree / ".venv").mkdir()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as left_behind:
        left_behind.bind(str(tree / "instance" / "scheduler.sock"))
        shutil.copytree(tree, short_tmp / "copy", ignore=not_copied(".venv"))
    assert (short_tmp / "copy" / "instance" / "kept.txt").read_text() == "kept"
    assert not (short_tmp / "copy" / "instance" / "scheduler.sock").exists()
    assert not (short_tmp / "copy" / ".venv").exists()


@pytest.fixture
def short_tmp():
    path = Path(tempfile.mkdtemp(prefix="tree", dir="/tmp"))  # a socket path is short
    yield path
    shutil.rmtree(path, ignore_errors=True)
