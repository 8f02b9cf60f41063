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
# One alternation, no capture groups: RE2 finds each token with its DFA alone, and the
# token's kind is told from its text (``_placeholder``), far cheaper than a submatch.
_TOKENS = linear.compile("|".join((
    rf"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}",  # UUID
    rf"\b(?:{_HEX}{{4,8}}:)?{_HEX}{{2}}:{_HEX}{{2}}\.[0-7]\b",  # PCI address
    rf"\b{_HEX}{{2}}(?::{_HEX}{{2}}){{5}}\b",  # MAC address
    r"\b[0-9]{1,3}(?:\.[0-9]{1,3}){3}\b",  # IPv4 address
    r"\b(?:[sv]d[a-z]{1,2}|xvd[a-z]{1,2}|nvme[0-9]+(?:[cn][0-9]+)*(?:p[0-9]+)?"  # block device
    r"|mmcblk[0-9]+(?:p[0-9]+)?|dm-[0-9]+|md[0-9]+|loop[0-9]+|sr[0-9]+|nbd[0-9]+|rbd[0-9]+"
    r"|zram[0-9]+)[0-9]*\b",
    r"\b(?:comm|name|task|process|exe)=(?:\"[^\"]{0,64}\"|[^\s,;]{1,64})",  # process names
    r"[A-Za-z0-9_.:/@+-]{1,32}\[[0-9]{1,10}\]",  # comm[pid]
    rf"\b0x{_HEX}+\b",
    rf"\b{_HEX}{{4,}}\b",  # hex when it has a digit (ffff8881c0de0000), else a word
    r"[0-9]+",
    r"\s{2,}",
)))
_HEXCHARS = frozenset("0123456789abcdefABCDEF")
# Concrete stand-ins, to test a template against the playbooks (see ``example``).
_EXAMPLE = {"<UUID>": "00000000-0000-0000-0000-000000000000", "<PCI>": "0000:00:00.0",
            "<MAC>": "00:00:00:00:00:00", "<IP>": "10.0.0.1", "<DEV>": "sda",
            "<TASK>": "task[1]", "<HEX>": "0x1", "<N>": "1", "<S>": "x"}


def _placeholder(token: str) -> str:
    """What a token found by ``_TOKENS`` stands for."""
    if token.isdigit():
        return "<N>"
    if token.isspace():
        return " "
    if token.startswith("0x"):
        return "<HEX>"
    if "=" in token:
        return token.split("=", 1)[0] + "=<S>"
    if token.endswith("]"):
        return "<TASK>"
    if len(token) == 36 and token.count("-") == 4:
        return "<UUID>"
    if ":" in token:
        return "<PCI>" if "." in token else "<MAC>"
    if "." in token:
        return "<IP>"
    if set(token) <= _HEXCHARS:
        return "<HEX>" if any(c.isdigit() for c in token) else token
    return "<DEV>"


@lru_cache(maxsize=4096)
def template(message: str) -> str:
    """The template of one kernel message (at most ``MAX_TEMPLATE_CHARS`` characters)."""
    text = message[: MAX_TEMPLATE_CHARS * 4].encode("utf-8", "replace")
    out: list[str] = []
    last = 0
    while (found := linear.spans(_TOKENS, text, last)) is not None:
        start, end = found[0]
        out.append(text[last:start].decode("utf-8", "replace"))
        out.append(_placeholder(text[start:end].decode("utf-8", "replace")))
        last = end  # tokens are never empty: the search moves on
    out.append(text[last:].decode("utf-8", "replace"))
    return "".join(out).strip()[:MAX_TEMPLATE_CHARS]


def example(text: str) -> str:
    """A concrete line a template stands for (placeholders filled with plain values)."""
    for placeholder, value in _EXAMPLE.items():
        text = text.replace(placeholder, value)
    return text
