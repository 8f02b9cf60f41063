"""Message templates: a kernel line with its variable parts replaced by placeholders.

An unclassified incident is identified by its template, so the thousand variants of one
driver error (another sector, another pid, another device) are one incident counted a
thousand times. Numbers, hex values and addresses, PCI, MAC and IP addresses, UUIDs,
block-device names and ``name[pid]`` tasks become placeholders; so do the values of
``comm=``/``name=`` fields, which are process names. One RE2 pass (linear time: the text
is attacker-chosen), and a small cache for the lines that repeat exactly.
"""

from __future__ import annotations

from functools import lru_cache

from guardrails import linear

MAX_TEMPLATE_CHARS = 300
_HEX = "[0-9a-fA-F]"
_TOKENS = linear.compile("|".join((
    rf"(?P<uuid>{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}})",
    rf"(?P<pci>\b(?:{_HEX}{{4,8}}:)?{_HEX}{{2}}:{_HEX}{{2}}\.[0-7]\b)",
    rf"(?P<mac>\b{_HEX}{{2}}(?::{_HEX}{{2}}){{5}}\b)",
    r"(?P<ip>\b[0-9]{1,3}(?:\.[0-9]{1,3}){3}\b)",
    r"(?P<dev>\b(?:[sv]d[a-z]{1,2}|xvd[a-z]{1,2}|nvme[0-9]+(?:[cn][0-9]+)*(?:p[0-9]+)?"
    r"|mmcblk[0-9]+(?:p[0-9]+)?|dm-[0-9]+|md[0-9]+|loop[0-9]+|sr[0-9]+|nbd[0-9]+|rbd[0-9]+"
    r"|zram[0-9]+)[0-9]*\b)",
    r"(?P<field>\b(?:comm|name|task|process|exe)=)(?:\"[^\"]{0,64}\"|[^\s,;]{1,64})",
    r"(?P<task>[A-Za-z0-9_.:/@+-]{1,32}\[[0-9]{1,10}\])",
    rf"(?P<hex>\b0x{_HEX}+\b)",
    rf"(?P<word>\b{_HEX}{{4,}}\b)",  # hex when it has a digit (ffff8881c0de0000), else a word
    r"(?P<num>[0-9]+)",
    r"(?P<space>\s{2,})",
)))
_PLACEHOLDER = {"uuid": "<UUID>", "pci": "<PCI>", "mac": "<MAC>", "ip": "<IP>",
                "dev": "<DEV>", "task": "<TASK>", "hex": "<HEX>", "num": "<N>", "space": " "}
# Concrete stand-ins, to test a template against the playbooks (see ``example``).
_EXAMPLE = {"<UUID>": "00000000-0000-0000-0000-000000000000", "<PCI>": "0000:00:00.0",
            "<MAC>": "00:00:00:00:00:00", "<IP>": "10.0.0.1", "<DEV>": "sda",
            "<TASK>": "task[1]", "<HEX>": "0x1", "<N>": "1", "<S>": "x"}


def _replace(m: linear.Pattern) -> str:
    kind = m.lastgroup
    if kind == "field":
        return f"{m.group('field')}<S>"
    if kind == "word":
        text = m.group()
        if text.isdigit():
            return "<N>"
        return "<HEX>" if any(c.isdigit() for c in text) else text
    return _PLACEHOLDER[kind]


@lru_cache(maxsize=4096)
def template(message: str) -> str:
    """The template of one kernel message (at most ``MAX_TEMPLATE_CHARS`` characters)."""
    return str(_TOKENS.sub(_replace, message[: MAX_TEMPLATE_CHARS * 4])).strip()[
        :MAX_TEMPLATE_CHARS]


def example(text: str) -> str:
    """A concrete line a template stands for (placeholders filled with plain values)."""
    for placeholder, value in _EXAMPLE.items():
        text = text.replace(placeholder, value)
    return text
