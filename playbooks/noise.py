"""Noise control for kernel lines no playbook claims: the failure vocabulary and the
known-harmless templates, loaded from ``noise.yaml`` (next to this file).

An err-or-worse kernel record that no playbook claims is an ``unclassified`` incident; so is
a warning that reads as a failure (a word of ``failure_words``). Real hosts print harmless
errors too; each ``harmless`` entry is a pattern with the public source that says why it is
harmless, and a line it matches opens nothing. Neither does a ``continuation`` line: a piece
of a kernel report (a stack frame, a register dump) that names no failure by itself.
Patterns are RE2 (they meet kernel text).
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from guardrails import linear
from playbooks.errors import PlaybookError

DEFAULT_FILE = Path(__file__).parent / "noise.yaml"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Harmless(_Model):
    """A kernel message known to be harmless, and where that is documented."""

    pattern: str = Field(min_length=3)
    why: str = Field(min_length=1)
    source: str = Field(pattern=r"^https?://\S+$")

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        try:
            return linear.check(v)
        except linear.PatternError as exc:
            raise ValueError(f"invalid regex (RE2): {exc.problem}") from None


class Noise(_Model):
    """The failure vocabulary, the harmless list and the pieces of kernel reports."""

    failure_words: tuple[str, ...] = Field(min_length=1)
    harmless: tuple[Harmless, ...] = ()
    continuation: tuple[Harmless, ...] = ()  # stack frames, register dumps, Mem-Info lines

    @field_validator("failure_words")
    @classmethod
    def _words(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for word in v:
            if not word.replace(" ", "").replace("-", "").isalpha():
                raise ValueError(f"a failure word is letters, spaces or hyphens: {word!r}")
        return v

    def vocabulary(self) -> linear.Pattern:
        """One case-insensitive RE2 pattern: any failure word, as a whole word."""
        words = "|".join(linear.escape(w) for w in sorted(self.failure_words, key=len,
                                                          reverse=True))
        return linear.compile(rf"(?i)\b(?:{words})\b")

    def quiet_pattern(self) -> linear.Pattern | None:
        """Every harmless and continuation pattern in one RE2 alternation (None: none)."""
        entries = (*self.harmless, *self.continuation)
        if not entries:
            return None
        return linear.compile("|".join(f"(?:{h.pattern})" for h in entries))


def load_noise(path: Path | None = None) -> Noise:
    """Load and validate the noise file; one ``PlaybookError`` line naming file and key."""
    source = path or DEFAULT_FILE
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
        return Noise.model_validate(data)
    except (OSError, yaml.YAMLError) as exc:
        raise PlaybookError("noise", f"{source}: {exc}") from exc
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        key = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise PlaybookError("noise", f"{source}: {key}: {msg}") from exc
