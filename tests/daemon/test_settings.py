"""Settings: flags over HEALER_* over the TOML file over defaults; bad input is one line, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from healer.errors import ConfigError
from healer.settings import load_settings


def test_flags_override_env_which_overrides_the_file(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "healer.toml"
    config.write_text('mode = "advise"\nport = 9000\ninterval_seconds = 2.0\n')
    monkeypatch.setenv("HEALER_PORT", "9100")
    s = load_settings(config, port=None)
    assert (s.mode, s.port, s.interval_seconds) == ("advise", 9100, 2.0)
    assert load_settings(config, port=9200).port == 9200


def test_default_database_is_sqlite_in_the_state_dir(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALER_STATE_DIR", str(tmp_path))
    assert load_settings().db_url == f"sqlite:///{tmp_path / 'healer.db'}"


@pytest.mark.parametrize(("text", "key"), [
    ('mode = "fast"\n', "mode"),
    ("interval_seconds = 0\n", "interval_seconds"),
    ("no_such_key = 1\n", "no_such_key"),
    ("port = \n", "config"),
])
def test_bad_config_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    config = tmp_path / "healer.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings(config)
    assert err.value.key == key


def test_llm_key_falls_back_to_openai_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-fallback")
    monkeypatch.setenv("HEALER_LLM_MODEL", "m")
    s = load_settings()
    assert s.llm_api_key is not None and s.llm_api_key.get_secret_value() == "sk-test-fallback"
    assert "sk-test-fallback" not in repr(s)  # a secret never reaches a log line


def test_bad_config_exits_2_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    config = tmp_path / "healer.toml"
    config.write_text('mode = "fast"\n')
    proc = subprocess.run([sys.executable, "-m", "healer.cli.main", "run", "--config",
                           str(config)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "mode" in proc.stderr and "Traceback" not in proc.stderr
