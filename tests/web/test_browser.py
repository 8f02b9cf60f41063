"""A real Chromium signs in, approves a pending proposal, and watches its state change live."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from healer.models import ActionState
from healer.settings import Settings
from healer.store.repository import Repository
from healer.telemetry import Telemetry
from tests.tools import require_tool
from tests.web.helpers import (
    PASSWORD,
    SILENCE_CHECK,
    Clock,
    FakeWindow,
    add_user,
    decide_votes,
    make_incident,
    make_proposal,
    serve,
)
from web import WindowLive, create_app

pytestmark = pytest.mark.browser
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    for tool in (CHROMIUM, CHROMEDRIVER):
        require_tool(tool, "Debian's chromium and chromium-driver (make system-deps)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=1280,1000",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(options=opts, service=webdriver.ChromeService(CHROMEDRIVER))
    drv.set_page_load_timeout(20)
    try:
        yield drv
    finally:
        drv.quit()


def test_approver_approves_in_chromium_and_sees_the_state_change_live(
        driver: webdriver.Chrome, settings: Settings, repo: Repository, clock: Clock,
        window: FakeWindow, tmp_path: Path) -> None:
    add_user(repo, "alice", "approver")
    incident = make_incident(repo, clock())
    record = make_proposal(repo, clock(), incident_id=incident.id)
    app = create_app(settings, repo=repo, telemetry=Telemetry(),
                     silence_check=SILENCE_CHECK, live=WindowLive(window),
                     clock=clock)
    wait = WebDriverWait(driver, 20)
    with serve(app) as base:
        driver.get(base + "/approvals")  # anonymous: sent to the login page
        wait.until(ec.presence_of_element_located((By.ID, "username"))).send_keys("alice")
        driver.find_element(By.ID, "password").send_keys(PASSWORD)
        driver.find_element(By.ID, "login-submit").click()

        card = wait.until(ec.presence_of_element_located((By.ID, f"action-{record.id}")))
        assert "net.core.somaxconn" in card.text and "above the auto band" in card.text
        card.find_element(By.CSS_SELECTOR, "input.comment").send_keys("approved from Chromium")
        driver.find_element(By.ID, f"approve-{record.id}").click()
        flash = wait.until(ec.presence_of_element_located((By.ID, "flash")))
        assert "recorded" in flash.text
        assert repo.list_approvals(record.id)[0].user == "alice"  # type: ignore[arg-type]

        driver.get(base + "/")
        state_cell = (By.CSS_SELECTOR, f"#row-action-{record.id} .state")
        wait.until(ec.text_to_be_present_in_element(state_cell, "awaiting"))
        decide_votes(repo)  # the daemon's next cycle counts the vote; the page follows live
        wait.until(ec.text_to_be_present_in_element(state_cell, "approved"))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "figure.chart polyline"))
        driver.execute_script("window.__no_reload = true;")
        # The daemon's engine applies it (simulated here by moving the journal record).
        repo.transition(record.id, ActionState.APPLYING, expect={ActionState.APPROVED})  # type: ignore[arg-type]
        repo.transition(record.id, ActionState.VERIFYING, expect={ActionState.APPLYING})  # type: ignore[arg-type]
        wait.until(ec.text_to_be_present_in_element(state_cell, "verifying"))
        assert driver.execute_script("return window.__no_reload === true;")
        driver.save_screenshot(str(tmp_path / "overview.png"))

        driver.set_window_size(390, 844)  # a phone
        driver.get(f"{base}/incidents/{incident.id}")
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "ol.timeline")))
        overflow = driver.execute_script(
            "return document.documentElement.scrollWidth - window.innerWidth;")
        driver.save_screenshot(str(tmp_path / "incident-phone.png"))
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert overflow <= 0, f"page is {overflow}px wider than a phone screen"
    assert errors == [], errors
    assert (tmp_path / "overview.png").stat().st_size > 10_000
