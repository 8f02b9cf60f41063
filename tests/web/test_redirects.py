"""``next`` after login: only same-origin paths survive, however the target is dressed up."""

from __future__ import annotations

from urllib.parse import quote, urljoin, urlsplit

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from healer.store.repository import Repository
from tests.web.helpers import add_user, login
from web.routers.session import safe_next

ORIGIN = "https://healer.example/"
C0_AND_SPACE = "".join(chr(c) for c in range(0x21))


def browser_target(href: str) -> str:
    """Where a browser goes for ``href`` on ORIGIN (WHATWG URL parsing, in short): leading
    and trailing C0 controls and spaces are trimmed, tabs and newlines removed anywhere,
    a backslash read as a slash, and two or more leading slashes start a host name."""
    cleaned = href.strip(C0_AND_SPACE)
    for ch in "\t\n\r":
        cleaned = cleaned.replace(ch, "")
    cleaned = cleaned.replace("\\", "/")
    if cleaned.startswith("//"):
        return "https://" + cleaned.lstrip("/")
    return urljoin(ORIGIN, cleaned)


def same_origin(href: str) -> bool:
    target = urlsplit(browser_target(href))
    return (target.scheme, target.netloc) == ("https", "healer.example")


@pytest.mark.parametrize("hostile", [
    "/\t/evil.example", "/\n/evil.example", "/\r\n/evil.example", "\t//evil.example",
    " //evil.example", "//evil.example/", "https://evil.example/", "/\\evil.example",
    "\\\\evil.example", "/\\/evil.example", "///evil.example", "http:evil.example",
    "javascript:alert(1)", "/\x00/evil.example", "/\u3000/evil.example", "\x0b//evil.example",
])
def test_hostile_next_targets_fall_back_to_home(hostile: str) -> None:
    assert safe_next(hostile) == "/"


@pytest.mark.parametrize("path", ["/approvals", "/incidents/7?tab=x", "/%2F%2Fevil.example",
                                  "/a/../b", "/api/v1/actions?state=verified#x"])
def test_local_paths_are_kept(path: str) -> None:
    assert safe_next(path) == path and same_origin(path)


HOSTILE_ALPHABET = st.sampled_from([*"/\\\t\n\r :.@%?#&=x-", "evil.example", "\x00", "\u3000",
                                    "\u2028", "09"])


@settings(max_examples=2000, deadline=None, derandomize=True)
@given(st.lists(HOSTILE_ALPHABET, max_size=12).map("".join))
def test_whatever_next_is_the_redirect_stays_on_this_origin(target: str) -> None:
    kept = safe_next(target)
    assert kept in (target, "/")
    assert same_origin(kept)


def test_login_page_never_links_to_a_hostile_next(client: TestClient,
                                                  repo: Repository) -> None:
    add_user(repo, "alice", "viewer")
    login(client, "alice")
    resp = client.get("/login?next=" + quote("/\t/evil.example"), follow_redirects=False)
    assert resp.headers["location"] == "/"
    client.cookies.clear()
    page = client.get("/login?next=/%09/evil.example").text
    assert "evil.example" not in page
