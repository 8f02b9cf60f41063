"""The noise file loads whole or fails with one line naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from playbooks.errors import PlaybookError
from playbooks.noise import load_noise


def test_a_bad_failure_word_names_the_file_and_the_key(tmp_path: Path) -> None:
    path = tmp_path / "noise.yaml"
    path.write_text("failure_words: [error, 'rm -rf /']\n")
    with pytest.raises(PlaybookError) as exc:
        load_noise(path)
    assert exc.value.key == "noise"
    assert exc.value.problem.startswith(f"{path}: failure_words: ")
    assert "rm -rf /" in exc.value.problem


def test_an_unreadable_noise_file_is_a_playbook_error(tmp_path: Path) -> None:
    with pytest.raises(PlaybookError, match=r"noise: .*missing\.yaml"):
        load_noise(tmp_path / "missing.yaml")
