"""Load the playbook library all-or-nothing, naming every error as ``file:line: key: problem``.

YAML is composed with PyYAML's SafeLoader so each key keeps its line (node marks); a
pydantic error's ``loc`` is walked down that tree to the deepest key that exists.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import ValidationError

from playbooks.errors import PlaybookError
from playbooks.schema import Kmsg, Playbook

DEFAULT_DIR = Path(__file__).parent / "library"
Loc = tuple[str | int, ...]


class LibraryError(PlaybookError):
    """The library did not load; ``errors`` lists every problem as ``file:line: key: problem``."""

    def __init__(self, errors: list[str]) -> None:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__("playbooks", errors[0] + more)
        self.errors = errors


@dataclass(frozen=True)
class Library:
    """The loaded playbooks, by id, in file order."""

    playbooks: tuple[Playbook, ...]
    source: Path | None = None
    _by_id: dict[str, Playbook] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_id.update({p.id: p for p in self.playbooks})

    def get(self, playbook_id: str) -> Playbook | None:
        """The playbook with this root-cause id, or None."""
        return self._by_id.get(playbook_id)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(p.id for p in self.playbooks)

    def __iter__(self) -> Iterator[Playbook]:
        return iter(self.playbooks)

    def __len__(self) -> int:
        return len(self.playbooks)


def _walk(node: yaml.Node, path: Loc, lines: dict[Loc, int], errors: list[tuple[Loc, str]]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                lines[(*path, key)] = key_node.start_mark.line + 1
                errors.append(((*path, key), "duplicate key"))
            seen.add(key)
            _walk(value_node, (*path, key), lines, errors)
            lines[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*path, i), lines, errors)


def _locate(loc: Loc, lines: dict[Loc, int]) -> tuple[int, str]:
    """The line of the deepest existing key on ``loc`` and the dotted key (tags skipped)."""
    path: Loc = ()
    shown: list[str] = []
    for part in loc:
        if (*path, part) in lines:
            path = (*path, part)
            shown.append(str(part))
        elif part == loc[-1] and isinstance(part, str) and not part.startswith("function-"):
            shown.append(part)  # a missing key: named, but the line is its parent's
    return lines.get(path, 1), ".".join(shown) or "(top)"


def _format(file: Path, loc: Loc, lines: dict[Loc, int], problem: str) -> str:
    line, key = _locate(loc, lines)
    return f"{file}:{line}: {key}: {problem}"


def load_file(path: Path) -> tuple[Playbook | None, list[str]]:
    """Parse one playbook file; returns the playbook or the list of errors."""
    try:
        text = path.read_text(encoding="utf-8")
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except (OSError, UnicodeDecodeError) as exc:
        return None, [f"{path}:1: (file): cannot read: {exc}"]
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        return None, [f"{path}:{line}: (yaml): {exc.problem or exc}"]
    except yaml.YAMLError as exc:
        return None, [f"{path}:1: (yaml): {exc}"]
    if not isinstance(data, dict):
        return None, [f"{path}:1: (top): a playbook must be a mapping"]
    lines: dict[Loc, int] = {}
    dup: list[tuple[Loc, str]] = []
    assert node is not None
    _walk(node, (), lines, dup)
    errors = [_format(path, loc, lines, problem) for loc, problem in dup]
    try:
        playbook = Playbook.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            msg = str(err["msg"]).removeprefix("Value error, ")
            errors.append(_format(path, tuple(err["loc"]), lines, msg))
        return None, errors
    if playbook.id != path.stem:
        errors.append(f"{path}:{lines.get(('id',), 1)}: id: must equal the file name "
                      f"({path.stem!r}), got {playbook.id!r}")
    return (None if errors else playbook), errors


def _library_errors(playbooks: list[tuple[Path, Playbook]]) -> list[str]:
    from playbooks.xid import XID_TABLE  # cross-check the Xid playbooks against the table

    errors: list[str] = []
    seen: dict[str, Path] = {}
    for path, pb in playbooks:
        if pb.id in seen:
            errors.append(f"{path}:1: id: duplicate id {pb.id!r} (also in {seen[pb.id]})")
        seen[pb.id] = path
        for sig in pb.detect.signals:
            if isinstance(sig, Kmsg) and "xid" in sig.where:
                for code in sig.where["xid"]:
                    info = XID_TABLE.get(int(code)) if code.isdigit() else None
                    if info is None or info.playbook != pb.id:
                        errors.append(f"{path}:1: detect: Xid {code} is not mapped to {pb.id} "
                                      "in playbooks/xid.py")
    return errors


def validate_dir(directory: Path | None = None) -> tuple[Library | None, list[str]]:
    """Load every ``*.yaml`` under ``directory``; the library only when there is no error."""
    root = directory or DEFAULT_DIR
    if not root.is_dir():
        return None, [f"{root}:1: (dir): not a directory"]
    files = sorted(p for p in root.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    errors: list[str] = []
    loaded: list[tuple[Path, Playbook]] = []
    for path in files:
        playbook, errs = load_file(path)
        errors.extend(errs)
        if playbook is not None:
            loaded.append((path, playbook))
    errors.extend(_library_errors(loaded))
    if not files:
        errors.append(f"{root}:1: (dir): no playbook files")
    if errors:
        return None, errors
    return Library(tuple(pb for _, pb in loaded), source=root), []


def load_library(directory: Path | None = None) -> Library:
    """Load the whole library or raise ``LibraryError`` naming every file and line; never half."""
    library, errors = validate_dir(directory)
    if library is None:
        raise LibraryError(errors)
    return library
