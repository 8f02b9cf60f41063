from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PSI_TREE = FIXTURES / "proc-psi"
NOPSI_TREE = FIXTURES / "proc-nopsi"
KMSG = FIXTURES / "kmsg"


@pytest.fixture
def proc_copy(tmp_path: Path) -> Path:
    """A writable copy of the PSI tree, for tests that break a file."""
    dst = tmp_path / "proc"
    shutil.copytree(PSI_TREE, dst)
    return dst
