"""Browser fixtures: `slipway serve` in embedded mode as a subprocess, and Debian's headless Chromium via Playwright.

On a laptop without Chromium or Playwright the browser tests are skipped; with CI=true they fail loudly.
Nothing is downloaded: Playwright drives the system's /usr/bin/chromium (`.ci/run` installs it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI

CHROMIUM = os.environ.get("SLIPWAY_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SECRET = "browser-test-secret"


def need(ok: bool, message: str) -> None:
    """Skip without a browser on a laptop; fail in CI, where the browser test must run."""
    if ok:
        return
    if IN_CI:
        pytest.fail(message + " (CI=true: the browser test must not be skipped; .ci/run installs it)", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def slipway_command() -> list[str]:
    """The installed `slipway` script next to this interpreter, else the module."""
    script = Path(sys.executable).with_name("slipway")
    return [str(script)] if script.exists() else [sys.executable, "-m", "slipway.cli"]


@dataclass
class Server:
    """A running `slipway serve` and what a test needs to talk to it."""

    url: str
    env: dict[str, str]
    cwd: Path
    database_url: str
    log: Path
    keys: dict[str, str] = field(default_factory=dict)

    def create_key(self, name: str, scope: str, *extra: str) -> str:
        """`slipway keys create`: the key is the last line of standard output."""
        run = subprocess.run([*slipway_command(), "keys", "create", "--name", name, "--scope", scope, *extra],
                             env=self.env, cwd=self.cwd, capture_output=True, text=True, timeout=60, check=True)
        return run.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`slipway serve` in embedded mode (SQLite, in-process queue) on a free port of its own."""
    cwd = tmp_path_factory.mktemp("serve")
    port = free_port()
    database_url = f"sqlite:///{cwd / 'slipway.db'}"
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": "", "WEBHOOK_SECRET": SECRET,
           "HOST": "127.0.0.1", "PORT": str(port), "LOG_FORMAT": "text", "LOG_LEVEL": "info",
           "GITHUB_API_URL": "http://127.0.0.1:9", "APP_ID": "", "PRIVATE_KEY": "", "PRIVATE_KEY_PATH": ""}
    log = cwd / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*slipway_command(), "serve"], env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    srv = Server(f"http://127.0.0.1:{port}", env, cwd, database_url, log)
    try:
        _wait_healthy(srv, proc)
        yield srv
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_healthy(srv: Server, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Wait for /healthz; fail with the server's log when it dies or never answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"slipway serve exited with {proc.returncode}:\n{srv.log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(srv.url + "/healthz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"slipway serve did not answer /healthz in {timeout:.0f} s:\n{srv.log.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium (the system's), launched once per module."""
    need(Path(CHROMIUM).exists() or bool(shutil.which(CHROMIUM)), f"Chromium is not installed at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need(False, "the playwright package is not installed (pip install -e '.[test]')")
        raise
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Page:
    """A browser tab that records JavaScript errors and CSP violations (both fail the test)."""

    def __init__(self, context: Any, base: str) -> None:
        self.context, self.base, self.errors = context, base, []
        self.tab = context.new_page()
        self.tab.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        self.tab.on("console", self._console)

    def _console(self, msg: Any) -> None:
        """Keep console errors; a 401 is an answer the tests provoke on purpose, not a fault."""
        if msg.type == "error" and "status of 401" not in msg.text:
            self.errors.append(f"console: {msg.text}")

    def sign_in(self, key: str) -> None:
        """Sign in through the form and land on the dashboard."""
        self.tab.goto(self.base + "/login")
        self.tab.get_by_label("API key").fill(key)
        self.tab.get_by_role("button", name="Sign in").click()
        self.tab.wait_for_url(self.base + "/")


@pytest.fixture
def new_page(browser: Any, server: Server) -> Iterator[Any]:
    """Open tabs in fresh contexts (own cookies), light scheme, desktop size; closed after the test."""
    made: list[Page] = []

    def make(width: int = 1440, height: int = 900) -> Page:
        context = browser.new_context(viewport={"width": width, "height": height}, color_scheme="light",
                                      locale="en-US", timezone_id="UTC")
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
        page = Page(context, server.url)
        made.append(page)
        return page

    yield make
    for page in made:
        page.context.close()
    errors = [e for page in made for e in page.errors]
    assert not errors, "the dashboard logged errors:\n" + "\n".join(errors)
