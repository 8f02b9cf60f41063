"""Prompt rendering: the templates under ``prompts/`` filled from a redacted bundle.

``PROMPT_VERSION`` is a digest of the templates' text: an LLM's answer is cached under it
(with the incident's fingerprint and the model), so changing a prompt asks again.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2

from healer.diagnose.evidence import (
    EvidenceBundle,
    data_block,
    format_gpus,
    format_processes,
)
from healer.diagnose.redact import Redactor
from healer.diagnose.schema import MAX_SLUG, MIN_SLUG

PROMPTS_DIR = Path(__file__).parent / "prompts"


def _digest(directory: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(directory.glob("*.j2")):
        h.update(path.name.encode() + b"\x00" + path.read_bytes() + b"\x00")
    return h.hexdigest()[:16]


PROMPT_VERSION = _digest(PROMPTS_DIR)


@functools.cache
def _env() -> jinja2.Environment:
    # Prompts are plain text, not HTML: no autoescape; StrictUndefined so a typo fails loudly.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(PROMPTS_DIR),
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def render(name: str, **values: Any) -> str:
    """Render ``prompts/<name>.j2``."""
    return _env().get_template(f"{name}.j2").render(**values)


def system_prompt(root_causes: Sequence[str], tools: bool, max_steps: int) -> str:
    """The system prompt: rules, root-cause ids, catalog, answer format."""
    return render("system", root_causes=list(root_causes), tools=tools, max_steps=max_steps,
                  min_slug=MIN_SLUG, max_slug=MAX_SLUG)


def user_prompt(bundle: EvidenceBundle, redactor: Redactor) -> str:
    """The evidence, redacted, with every untrusted text inside its own data block."""
    r = redactor.redact
    blocks: list[dict[str, str]] = []
    for i, line in enumerate(bundle.kmsg, 1):
        blocks.append({"title": f"Kernel-log line {i}", "text": data_block(f"kmsg-{i}", r(line))})
    if bundle.captures:
        text = "\n".join(f"{k}={v}" for k, v in sorted(bundle.captures.items()))
        blocks.append({"title": "Values captured from the log",
                       "text": data_block("captures", r(text))})
    if bundle.tunables:
        text = "\n".join(f"{k} = {v}" for k, v in sorted(bundle.tunables.items()))
        blocks.append({"title": "Current tunables", "text": data_block("tunables", r(text))})
    if bundle.processes:
        text = format_processes(bundle.processes)
        blocks.append({"title": "Top processes", "text": data_block("processes", r(text))})
    if bundle.gpus:
        text = format_gpus(bundle.gpus)
        blocks.append({"title": "GPU state", "text": data_block("gpus", r(text))})
    if bundle.host or bundle.related:
        lines = [f"{k} = {v}" for k, v in sorted(bundle.host.items())]
        lines += [f"also open: {incident}" for incident in bundle.related]
        blocks.append({"title": "The host's context",
                       "text": data_block("host", r("\n".join(lines)))})
    return render(
        "user",
        playbook=bundle.playbook,
        scope=r(bundle.scope),
        severity=bundle.severity,
        count=bundle.count,
        signals=sorted(bundle.signals.items()),
        metrics=bundle.metrics,
        blocks=blocks,
    )
