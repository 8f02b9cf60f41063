"""Loading is all-or-nothing, and every error names file:line: key: problem."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from healer.cli.main import main
from playbooks.loader import DEFAULT_DIR, LibraryError, load_library, validate_dir

GOOD = (DEFAULT_DIR / "soft-lockup.yaml").read_text()


def write(tmp_path: Path, name: str, text: str) -> Path:
    (tmp_path / name).write_text(text)
    return tmp_path


def test_shipped_library_validates_clean(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["playbooks", "validate"]) == 0
    assert "ok: 40 playbooks" in capsys.readouterr().out


def test_unknown_key_names_file_line_and_key(tmp_path: Path) -> None:
    bad = GOOD.replace("  sysctls: [kernel.watchdog_thresh", "  sysctl: [kernel.watchdog_thresh")
    write(tmp_path, "soft-lockup.yaml", bad)
    _, errors = validate_dir(tmp_path)
    line = bad.splitlines().index("  sysctl: [kernel.watchdog_thresh, kernel.softlockup_panic]") + 1
    assert errors == [f"{tmp_path}/soft-lockup.yaml:{line}: evidence.sysctl: "
                      "Extra inputs are not permitted"]


def test_nested_signal_error_points_at_the_signal_line(tmp_path: Path) -> None:
    bad = GOOD.replace("      count: 1\n", "      count: 0\n", 1)
    write(tmp_path, "soft-lockup.yaml", bad)
    _, errors = validate_dir(tmp_path)
    line = bad.splitlines().index("      count: 0") + 1
    assert len(errors) == 1
    assert errors[0].startswith(f"{tmp_path}/soft-lockup.yaml:{line}: detect.any.0.count: ")


def test_unknown_operator_in_a_remedy_is_a_load_error(tmp_path: Path) -> None:
    text = (DEFAULT_DIR / "listen-backlog-too-small.yaml").read_text()
    bad = text.replace("clamp(max(current*4, 4096), 128, 65535)", "shell(current)", 1)
    write(tmp_path, "listen-backlog-too-small.yaml", bad)
    _, errors = validate_dir(tmp_path)
    line = next(i for i, t in enumerate(bad.splitlines(), 1) if "kind: sysctl_write" in t) - 1
    assert len(errors) == 1
    where = f"{tmp_path}/listen-backlog-too-small.yaml:{line}: remedies.0.action"
    assert errors[0].startswith(where)
    assert "unknown operator 'shell'" in errors[0]


def test_yaml_syntax_error_names_its_line(tmp_path: Path) -> None:
    write(tmp_path, "soft-lockup.yaml", GOOD.replace("severity: critical", "severity: [critical"))
    _, errors = validate_dir(tmp_path)
    assert len(errors) == 1 and ":(yaml)" not in errors[0]
    assert errors[0].startswith(f"{tmp_path}/soft-lockup.yaml:")
    assert "(yaml)" in errors[0]


def test_duplicate_key_and_wrong_file_name_are_errors(tmp_path: Path) -> None:
    twice = GOOD.replace("severity: critical", "severity: critical\nseverity: info")
    write(tmp_path, "other.yaml", twice)
    _, errors = validate_dir(tmp_path)
    assert any(":4: severity: duplicate key" in e for e in errors)
    assert any("id: must equal the file name" in e for e in errors)


def test_bad_regex_and_bad_url_are_reported_together(tmp_path: Path) -> None:
    bad = GOOD.replace("BUG: soft lockup", "BUG: (soft lockup").replace(
        "https://docs.kernel.org/admin-guide/lockup-watchdogs.html", "ftp://x")
    write(tmp_path, "soft-lockup.yaml", bad)
    _, errors = validate_dir(tmp_path)
    assert len(errors) == 2
    assert any("detect.any.0.regex: invalid regex" in e for e in errors)
    assert any("references: not a URL" in e for e in errors)


def test_one_bad_file_stops_the_whole_library_from_loading(tmp_path: Path) -> None:
    for path in DEFAULT_DIR.glob("*.yaml"):
        shutil.copy(path, tmp_path)
    write(tmp_path, "soft-lockup.yaml", GOOD.replace("severity: critical", "severity: urgent"))
    with pytest.raises(LibraryError) as exc:
        load_library(tmp_path)
    assert exc.value.errors[0].startswith(f"{tmp_path}/soft-lockup.yaml:3: severity: ")


def test_validate_cli_prints_every_error_and_exits_1(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, "soft-lockup.yaml", GOOD.replace("severity: critical", "severity: urgent"))
    assert main(["playbooks", "validate", str(tmp_path)]) == 1
    assert f"{tmp_path}/soft-lockup.yaml:3: severity: " in capsys.readouterr().err


def test_list_cli_shows_ids_titles_and_watches(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["playbooks", "list"]) == 0
    out = capsys.readouterr().out
    assert "listen-backlog-too-small" in out and "rate:net.tcp.listen_overflows_total" in out


def test_list_json_and_bad_dir_exit_codes(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["playbooks", "list", "--json"]) == 0
    assert '"id": "gpu-xid-fell-off-bus"' in capsys.readouterr().out
    write(tmp_path, "x.yaml", "id: [")
    assert main(["playbooks", "list", "--dir", str(tmp_path)]) == 2
