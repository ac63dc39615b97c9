"""`slipway setup`: the manifest flow driven over real HTTP against the fake GitHub."""

from __future__ import annotations

import json
import socket
import stat
import threading
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import yaml

from slipway.settings import load_settings
from slipway.setup import SetupError, SetupServer, complete_registration, github_web_url, update_env
from tests.conftest import APP_ID

WEBHOOK_URL = "https://slipway.example.org/api/github/webhooks"


class FormParser(HTMLParser):
    """Collects the first form's method, action and input fields."""

    def __init__(self) -> None:
        super().__init__()
        self.method = self.action = None
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attrs = dict(attrs)
        if tag == "form" and self.action is None:
            self.method, self.action = attrs.get("method"), attrs.get("action")
        elif tag == "input" and attrs.get("name"):
            self.fields[attrs["name"]] = attrs.get("value", "")


def read_form(html: str) -> FormParser:
    """Parse the setup page."""
    parser = FormParser()
    parser.feed(html)
    return parser


@pytest.fixture
def settings(fake_github):  # noqa: ANN001, ANN201
    """Settings that point at the fake GitHub (no App yet: setup is what creates it)."""
    return load_settings(_env_file=None, github_api_url=fake_github.url, github_timeout=2.0)


@pytest.fixture
def server(settings, tmp_path: Path):  # noqa: ANN001, ANN201
    """A running setup server writing into tmp_path."""
    srv = SetupServer(settings, webhook_url=WEBHOOK_URL, env_path=tmp_path / ".env",
                      key_path=tmp_path / "slipway-private-key.pem").start()
    yield srv
    srv.stop()


def get(url: str, **params: str) -> httpx.Response:
    """A browser-like GET (no redirects to follow: the pages are final)."""
    return httpx.get(url, params=params, timeout=5)


def test_page_posts_the_manifest_to_github_with_a_state(server: SetupServer, fake_github) -> None:  # noqa: ANN001
    """The form targets GitHub's new-App page, carries app.yml with this deployment's URLs, and a state."""
    resp = get(server.url)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    form = read_form(resp.text)
    assert form.method == "post"
    target = urlsplit(form.action)
    assert f"{target.scheme}://{target.netloc}" == fake_github.url  # the web host derived from GITHUB_API_URL
    assert target.path == "/settings/apps/new"
    state = parse_qs(target.query)["state"][0]
    assert len(state) >= 20 and state == server.flow.state
    manifest = json.loads(form.fields["manifest"])
    app_yml = yaml.safe_load((Path(__file__).resolve().parents[1] / "app.yml").read_text())
    assert manifest["hook_attributes"]["url"] == WEBHOOK_URL
    assert manifest["url"] == "https://slipway.example.org"
    assert manifest["redirect_url"] == f"http://127.0.0.1:{server.port}/redirect"
    assert manifest["default_events"] == app_yml["default_events"]
    assert manifest["default_permissions"] == app_yml["default_permissions"]
    assert manifest["public"] is False and manifest["name"] == app_yml["name"]


def test_org_page_targets_the_organisation(settings, tmp_path: Path) -> None:  # noqa: ANN001
    """--org posts to /organizations/ORG/settings/apps/new; --name overrides app.yml's name."""
    with SetupServer(settings, webhook_url=WEBHOOK_URL, env_path=tmp_path / ".env", key_path=tmp_path / "k.pem",
                     org="octo-org", name="Slipway (octo)") as srv:
        form = read_form(get(srv.url).text)
    assert urlsplit(form.action).path == "/organizations/octo-org/settings/apps/new"
    assert json.loads(form.fields["manifest"])["name"] == "Slipway (octo)"


@pytest.mark.parametrize(("api", "web"), [
    ("https://api.github.com", "https://github.com"),
    ("https://api.github.com/", "https://github.com"),
    ("https://ghe.example.com/api/v3", "https://ghe.example.com"),
    ("https://api.octo.ghe.com", "https://octo.ghe.com"),
])
def test_github_web_host_is_derived_from_the_api_url(api: str, web: str) -> None:
    """github.com, GitHub Enterprise Server and GHE.com data residency."""
    assert github_web_url(api) == web


def test_redirect_with_the_code_writes_env_and_key(server: SetupServer, fake_github, tmp_path: Path,  # noqa: ANN001
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """GitHub's redirect completes the flow: .env updated (other lines kept), key 0600, App usable."""
    env = tmp_path / ".env"
    env.write_text("# mine\nLOG_LEVEL=debug\nWEBHOOK_SECRET=old-secret\nPRIVATE_KEY=-----BEGIN old\nPORT=4000\n")
    fake_github.add_manifest_code("code-1")
    resp = get(server.url + "redirect", code="code-1", state=server.flow.state)
    assert resp.status_code == 200, resp.text
    result = server.wait(timeout=5)
    assert result["app_id"] == APP_ID and result["slug"] == "slipway"
    assert fake_github.webhook_secret  # set by the conversion
    lines = env.read_text().splitlines()
    values = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    assert values == {"LOG_LEVEL": "debug", "PORT": "4000", "APP_ID": str(APP_ID),
                      "PRIVATE_KEY_PATH": "slipway-private-key.pem", "WEBHOOK_SECRET": fake_github.webhook_secret,
                      "GITHUB_CLIENT_ID": fake_github.client_id, "GITHUB_CLIENT_SECRET": values["GITHUB_CLIENT_SECRET"]}
    assert lines[0] == "# mine" and len(values["GITHUB_CLIENT_SECRET"]) >= 20
    key = tmp_path / "slipway-private-key.pem"
    assert key.read_bytes() == fake_github.private_key_pem
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    for secret in (fake_github.webhook_secret, values["GITHUB_CLIENT_SECRET"], "PRIVATE KEY"):
        assert secret not in resp.text
    # The written configuration is a working App: Settings read .env and the JWT is accepted.
    monkeypatch.chdir(tmp_path)
    configured = load_settings(_env_file=".env", github_api_url=fake_github.url)
    assert configured.app_id == APP_ID and configured.secrets == [fake_github.webhook_secret]
    from workers.github import GitHubApp, MemoryTokens

    app = GitHubApp(configured, MemoryTokens()).call_app(lambda gh: gh.rest.apps.get_authenticated())
    assert app.status_code == 200


def test_wrong_state_is_refused_and_the_code_is_not_used(server: SetupServer, fake_github, tmp_path: Path) -> None:  # noqa: ANN001
    """A redirect with another state (CSRF) does not convert the code or write anything."""
    fake_github.add_manifest_code("code-2")
    for state in ("forged", "", server.flow.state[:-1]):
        resp = get(server.url + "redirect", code="code-2", state=state)
        assert resp.status_code == 400 and "state" in resp.text
    assert fake_github.calls_to("POST", "/app-manifests/") == []
    assert not (tmp_path / ".env").exists() and not (tmp_path / "slipway-private-key.pem").exists()
    assert not server.flow.done.is_set()
    # The right state still works afterwards.
    assert get(server.url + "redirect", code="code-2", state=server.flow.state).status_code == 200


def test_reused_or_unknown_code_gives_a_clear_error(settings, fake_github, tmp_path: Path) -> None:  # noqa: ANN001
    """GitHub converts a code once; a second use (or an unknown code) says what happened and writes nothing."""
    fake_github.add_manifest_code("code-3")
    complete_registration("code-3", settings, tmp_path / "a.env", tmp_path / "a.pem")
    with pytest.raises(SetupError, match="already used"):
        complete_registration("code-3", settings, tmp_path / "b.env", tmp_path / "b.pem")
    assert not (tmp_path / "b.env").exists() and not (tmp_path / "b.pem").exists()
    with SetupServer(settings, webhook_url=WEBHOOK_URL, env_path=tmp_path / "c.env",
                     key_path=tmp_path / "c.pem") as srv:
        resp = get(srv.url + "redirect", code="code-3", state=srv.flow.state)
        assert resp.status_code == 400 and "already used" in resp.text
        assert not srv.flow.done.is_set()


def test_unreachable_github_is_a_clear_error(tmp_path: Path) -> None:
    """No GitHub at the API URL: a SetupError naming it, not a traceback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = load_settings(_env_file=None, github_api_url=f"http://127.0.0.1:{port}", github_timeout=1.0)
    with pytest.raises(SetupError, match="unreachable"):
        complete_registration("x", settings, tmp_path / ".env", tmp_path / "k.pem")


def test_update_env_replaces_keys_once_and_keeps_everything_else(tmp_path: Path) -> None:
    """Duplicates of a key collapse to the new value; comments, blanks and `export` lines survive."""
    env = tmp_path / ".env"
    env.write_text("A=1\n\n# c\nexport APP_ID=1\nAPP_ID=2\nB=x=y\n")
    update_env(env, {"APP_ID": "99", "NEW": "v"})
    assert env.read_text() == "A=1\n\n# c\nAPP_ID=99\nB=x=y\nNEW=v\n"


def test_setup_command_end_to_end(fake_github, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """`slipway setup --port P --no-browser` serves, completes on the redirect, stops, prints no secret."""
    from click.testing import CliRunner

    from slipway.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GITHUB_API_URL", fake_github.url)
    monkeypatch.setenv("LOG_FORMAT", "text")
    manifest = Path(__file__).resolve().parents[1] / "app.yml"
    fake_github.add_manifest_code("code-cli")
    outcome: dict = {}

    def run() -> None:
        outcome["result"] = CliRunner().invoke(main, [
            "setup", "--webhook-url", WEBHOOK_URL, "--port", str(port), "--no-browser",
            "--manifest", str(manifest)])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    page = None
    for _ in range(100):
        try:
            page = get(f"http://127.0.0.1:{port}/")
            break
        except httpx.ConnectError:
            time.sleep(0.05)
    assert page is not None and page.status_code == 200
    state = parse_qs(urlsplit(read_form(page.text).action).query)["state"][0]
    assert get(f"http://127.0.0.1:{port}/redirect", code="code-cli", state=state).status_code == 200
    thread.join(10)
    assert not thread.is_alive(), "setup did not stop after the registration"
    result = outcome["result"]
    assert result.exit_code == 0, result.output
    assert f"App id {APP_ID}" in result.output
    env = (tmp_path / ".env").read_text()
    assert f"APP_ID={APP_ID}" in env and f"WEBHOOK_SECRET={fake_github.webhook_secret}" in env
    assert fake_github.webhook_secret not in result.output and "PRIVATE KEY" not in result.output
    with pytest.raises(httpx.ConnectError):
        get(f"http://127.0.0.1:{port}/")


def test_values_dotenv_would_mangle_are_quoted_and_read_back(tmp_path: Path) -> None:
    """A key path with a space (or a #) survives the round trip through .env and Settings."""
    env = tmp_path / ".env"
    update_env(env, {"PRIVATE_KEY_PATH": "my keys/#1 key.pem", "APP_ID": "7"})
    settings = load_settings(_env_file=str(env))
    assert str(settings.private_key_path) == "my keys/#1 key.pem" and settings.app_id == 7


def test_page_refuses_other_host_names(server: SetupServer) -> None:
    """DNS rebinding: the page answers only under 127.0.0.1 or localhost."""
    resp = httpx.get(server.url, headers={"Host": f"evil.example:{server.port}"}, timeout=5)
    assert resp.status_code == 421 and server.flow.state not in resp.text
    assert httpx.get(server.url, headers={"Host": f"localhost:{server.port}"}, timeout=5).status_code == 200
