"""The dashboard in a real headless Chromium against `slipway serve`: sign-in, live refresh, filters, badges, keys.

The history shown (two weeks of deployments, environments and gate decisions) is written straight into
the server's SQLite file through the deployment-record functions; the live deployment goes through the
generic deploy webhook like any CI report. The last test writes the screenshot docs/dashboard.png.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import Server

pytestmark = pytest.mark.slow

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"
REFRESH_WITHIN_MS = 6500  # the page polls every 5 s
# Badge backgrounds in the light scheme (dashboard.css): production green, staging yellow, previews purple, others blue.
BADGE_COLOURS = {"production": "rgb(220, 245, 228)", "staging": "rgb(255, 241, 194)", "pr-42": "rgb(238, 228, 255)",
                 "qa": "rgb(224, 235, 255)"}
OLD_VERSION, RECENT_VERSION = "v0.9.0-old", "v1.9.1-hotfix"


def sha(text: str) -> str:
    """A stable fake commit sha."""
    return hashlib.sha1(text.encode()).hexdigest()


# ------------------------------------------------------------------ history


def seed(database_url: str) -> None:
    """Two weeks of deployments in three repositories, their environments and a few gate decisions."""
    from sqlalchemy import insert

    from models import Decision, Deployment
    from models.base import utcnow
    from models.db import make_engine
    from workers.record import ensure_environment, record_status

    rng, now = random.Random(7), utcnow()
    plan: list[tuple[timedelta, str, str, str, str, str]] = []  # (age, repo, env, version, final state, deployer)
    for day in range(13, -1, -1):
        for repo, n in (("octo-org/web", 3), ("octo-org/api", 2)):
            for i in range(rng.randint(1, n)):
                age = timedelta(days=day, hours=rng.randint(1, 20), minutes=rng.randint(0, 59))
                plan.append((age, repo, "staging", f"v1.{13 - day}.{i}", "success" if rng.random() > .1 else "failure",
                             rng.choice(("mona", "hubot", "octocat"))))
        if day % 2 == 0:
            plan.append((timedelta(days=day, hours=2), "octo-org/web", "production", f"v1.{13 - day}.0",
                         "failure" if day == 6 else "success", "mona"))
            plan.append((timedelta(days=day, hours=1), "octo-org/api", "production", f"v2.{13 - day}.0", "success",
                         "release-bot"))
        if day == 6:  # the failed production deploy is fixed two hours later
            plan.append((timedelta(days=6), "octo-org/web", "production", "v1.7.1", "success", "mona"))
    plan += [
        (timedelta(days=3), "octo-org/billing", "production", OLD_VERSION, "success", "jenkins"),
        (timedelta(days=1, hours=3), "octo-org/billing", "qa", "v0.9.1-rc1", "success", "jenkins"),
        (timedelta(hours=5), "octo-org/web", "pr-42", "", "success", "dependabot"),
        (timedelta(hours=2), "octo-org/web", "pr-57", "", "in_progress", "octocat"),
        (timedelta(minutes=10), "octo-org/api", "staging", RECENT_VERSION, "success", "hubot"),
    ]
    engine = make_engine(database_url)
    with engine.begin() as conn:
        for age, repo, env, version, state, who in sorted(plan, key=lambda p: -p[0].total_seconds()):
            created = now - age
            committed = created - timedelta(hours=rng.randint(1, 30))  # gives DORA a lead time
            commit = sha(f"{repo}{env}{version}{age}")
            preview = env.startswith("pr-")
            ensure_environment(conn, repo, env, "preview" if preview else "static")
            dep_id = conn.execute(insert(Deployment).values(
                repository=repo, environment=env, sha=commit, ref="main" if not preview else f"feature/{env}",
                version=version or None, status="pending", source=rng.choice(("github_actions", "jenkins", "argocd")),
                deployer={"name": who}, transient=preview, production=env == "production", created_at=created,
                updated_at=created, extra={"commit": {"date": committed.isoformat()}},
            )).inserted_primary_key[0]
            record_status(conn, dep_id, state="in_progress", created_at=created + timedelta(seconds=20), source="seed")
            if state != "in_progress":
                record_status(conn, dep_id, state=state, created_at=created + timedelta(minutes=rng.randint(2, 9)),
                              source="seed")
        decisions = [
            ("octo-org/web", "production", "deploy", ["required checks passed: ci/test, ci/lint",
                                                      "release v1.13.0 targets production"]),
            ("octo-org/api", "staging", "wait", ["waiting for check ci/e2e (in progress)"]),
            ("octo-org/web", "staging", "block", ["check ci/test failed on 4c1d2e3",
                                                  "deploy freeze: Friday 16:00–Monday"]),
            ("octo-org/web", "pr-57", "deploy", ["pull request #57 opened by octocat",
                                                 "required checks passed: ci/test"]),
            ("octo-org/api", "staging", "superseded", ["a newer commit 9f8e7d6 is waiting for the same environment"]),
        ]
        for i, (repo, env, verdict, reasons) in reversed(list(enumerate(decisions))):  # oldest first, as they happen
            conn.execute(insert(Decision).values(repository=repo, environment=env, sha=sha(f"decision{i}"),
                                                 verdict=verdict, reasons=reasons, delivery_guid=f"seed-{i}",
                                                 created_at=now - timedelta(minutes=7 + 45 * i)))
    engine.dispose()


@pytest.fixture(scope="module")
def site(browser: Any, server: Server) -> Server:
    """The server with its history and keys from `slipway keys create` (browser first: a missing one fails fast)."""
    seed(server.database_url)
    server.keys.update(read=server.create_key("maintainer", "read"), admin=server.create_key("ops", "admin"),
                       deploy=server.create_key("github-actions", "deploy"))
    return server


def post_deployment(site: Server, body: dict[str, Any]) -> dict[str, Any]:
    """Report a deployment through the generic deploy webhook, as a CI step does."""
    req = urllib.request.Request(site.url + "/api/v1/deployments", data=json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": f"Bearer {site.keys['deploy']}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 201
        return json.loads(resp.read())


def rows(tab: Any) -> Any:
    """The deployment rows of the latest-deployments table."""
    return tab.locator("#deployments-body tr[data-id]")


def column(tab: Any, css: str) -> list[str]:
    """Texts of one cell per deployment row."""
    return [t.strip() for t in rows(tab).locator(css).all_inner_texts()]


# ------------------------------------------------------------------ tests


def test_a_new_deployment_appears_without_a_reload(site: Server, new_page) -> None:
    """Signed in with a read key, the list shows a deployment reported by CI within one refresh, in place."""
    from playwright.sync_api import expect

    page = new_page()
    tab = page.tab
    page.sign_in(site.keys["read"])
    expect(rows(tab).first).to_be_visible()
    expect(tab.locator("#live-text")).to_contain_text("Live")
    tab.evaluate("window.__notReloaded = true")
    commit = sha("live")
    post_deployment(site, {"environment": "production", "repository": "octo-org/web", "version": "v3.0.0-live",
                           "commit_sha": commit, "status": "success", "source": "github_actions",
                           "deployer": {"name": "hubot"}})
    started = time.monotonic()
    row = tab.locator("#deployments-body tr", has_text="v3.0.0-live")
    expect(row).to_be_visible(timeout=REFRESH_WITHIN_MS)
    assert time.monotonic() - started < REFRESH_WITHIN_MS / 1000
    assert tab.evaluate("window.__notReloaded") is True, "the page reloaded instead of updating in place"
    assert row.locator("a").get_attribute("href") == f"https://github.com/octo-org/web/commit/{commit}"
    expect(row).to_contain_text("hubot")
    expect(row).to_contain_text("just now")
    expect(row.locator(".badge")).to_have_text("production")
    expect(tab.locator("#announce")).to_have_text("1 new deployment")


def test_filters_by_period_environment_and_repository(site: Server, new_page) -> None:
    """The period, environment and repository filters narrow the list at once and live in the URL."""
    from playwright.sync_api import expect

    page = new_page()
    tab = page.tab
    page.sign_in(site.keys["read"])
    body = tab.locator("#deployments-body")
    expect(rows(tab).first).to_be_visible()
    tab.get_by_text("1h", exact=True).click()
    tab.wait_for_function("""() => { const times = [...document.querySelectorAll('#deployments-body time')];
        return times.length && times.every(t => Date.parse(t.dateTime) > Date.now() - 3660e3); }""")
    expect(body).to_contain_text(RECENT_VERSION)
    assert "period=1h" in tab.url

    tab.get_by_label("Repository", exact=True).select_option("octo-org/billing")  # deployed 3 days and 27 hours ago
    expect(body).to_have_text("No deployments in this period.")
    tab.get_by_text("24h", exact=True).click()
    expect(body).to_have_text("No deployments in this period.")
    tab.get_by_text("7d", exact=True).click()
    expect(body).to_contain_text(OLD_VERSION)
    expect(body).to_contain_text("v0.9.1-rc1")
    assert "period=7d" in tab.url and "repository=octo-org%2Fbilling" in tab.url
    tab.get_by_label("Repository", exact=True).select_option("")

    tab.get_by_text("30d", exact=True).click()
    tab.get_by_label("Environment", exact=True).select_option("staging")
    expect(tab.locator("#deployments-body tr[data-id] .badge").first).to_have_text("staging")
    tab.wait_for_function("() => [...document.querySelectorAll('#deployments-body tr[data-id] .badge')]"
                          ".every(b => b.textContent === 'staging')")
    assert set(column(tab, "td:first-child")) == {"staging"} and rows(tab).count() == 20
    assert "environment=staging" in tab.url

    tab.get_by_label("Repository", exact=True).select_option("octo-org/api")
    tab.wait_for_function("() => [...document.querySelectorAll('#deployments-body tr[data-id] td.repo')]"
                          ".every(c => c.textContent === 'octo-org/api')")
    assert set(column(tab, "td.repo")) == {"octo-org/api"}
    expect(tab.locator("#environments .env")).to_have_count(1)  # octo-org/api's staging
    expect(tab.locator("#decisions")).to_contain_text("waiting for check ci/e2e")

    tab.reload()  # the filters come back from the URL
    expect(tab.get_by_label("Environment", exact=True)).to_have_value("staging")
    expect(tab.get_by_label("Repository", exact=True)).to_have_value("octo-org/api")
    expect(tab.locator("#period-30d")).to_be_checked()
    unlabelled = tab.evaluate("""() => [...document.querySelectorAll('input:not([type=hidden]), select, button')]
        .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
        .map(e => e.outerHTML)""")
    assert unlabelled == []


def test_environment_badges_have_their_colours(site: Server, new_page) -> None:
    """production green, staging yellow, previews purple, anything else blue."""
    from playwright.sync_api import expect

    page = new_page()
    tab = page.tab
    page.sign_in(site.keys["read"])
    for name, colour in BADGE_COLOURS.items():
        badge = tab.locator("#environments .badge").filter(has_text=re.compile(f"^{re.escape(name)}$")).first
        expect(badge).to_be_visible()
        assert badge.evaluate("b => getComputedStyle(b).backgroundColor") == colour, name
    assert tab.locator("#chart svg rect.bar-ok").count() > 0
    expect(tab.locator("#stat-frequency")).not_to_have_text("–")


def test_admin_creates_a_key_shown_once_and_revoking_it_ends_its_session(site: Server, new_page) -> None:
    """The new key is shown once with a working copy button; once revoked, its open dashboard signs out."""
    from playwright.sync_api import expect

    admin = new_page()
    tab = admin.tab
    admin.sign_in(site.keys["admin"])
    tab.get_by_role("link", name="API keys").click()
    tab.get_by_label("Name").fill("Release dashboard")
    tab.get_by_label("Scope").select_option("read")
    tab.get_by_role("button", name="Create key").click()
    expect(tab.get_by_text("will not be shown again")).to_be_visible()
    key = tab.locator("#new-key-value").input_value()
    assert key.startswith("slw_")
    tab.get_by_role("button", name="Copy").click()
    expect(tab.get_by_role("button", name="Copied")).to_be_visible()
    assert tab.evaluate("navigator.clipboard.readText()") == key

    tab.goto(site.url + "/settings/keys")
    assert key not in tab.content()
    expect(tab.locator("tr", has_text="Release dashboard")).to_contain_text("active")

    other = new_page()
    other.sign_in(key)
    expect(rows(other.tab).first).to_be_visible()

    tab.once("dialog", lambda dialog: dialog.accept())
    tab.get_by_role("button", name="Revoke Release dashboard").click()
    expect(tab.locator("tr", has_text="Release dashboard")).to_contain_text("revoked")
    other.tab.wait_for_url(site.url + "/login", timeout=REFRESH_WITHIN_MS + 1000)


def test_small_screens_do_not_scroll_sideways(site: Server, new_page) -> None:
    """On a phone-sized viewport the page fits its width (wide tables scroll inside their panel)."""
    from playwright.sync_api import expect

    page = new_page(width=390, height=844)
    page.sign_in(site.keys["read"])
    expect(rows(page.tab).first).to_be_visible()
    assert page.tab.evaluate("document.documentElement.scrollWidth") <= 390


def test_screenshot(site: Server, new_page) -> None:
    """docs/dashboard.png: an admin's view of the last 7 days."""
    from playwright.sync_api import expect

    page = new_page(width=1440, height=900)
    tab = page.tab
    page.sign_in(site.keys["admin"])
    tab.get_by_text("7d", exact=True).click()
    expect(tab.locator("#deployments-body")).to_contain_text("2 days ago")
    expect(tab.locator("#stat-lead")).not_to_have_text("–")
    expect(tab.locator("#chart svg")).to_be_visible()
    tab.evaluate("document.fonts.ready")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    tab.screenshot(path=str(SCREENSHOT), full_page=True, animations="disabled")
    assert SCREENSHOT.stat().st_size > 20_000
