"""The `slipway` command line."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import click

from slipway.settings import Settings, load_settings


def _settings() -> Settings:
    """Settings with logging configured for this process."""
    from slipway import logs

    settings = load_settings()
    logs.setup(settings.log_level, settings.log_format, settings.secrets)
    return settings


def _runtime(settings: Settings, *, inline: bool = False):  # noqa: ANN202
    """The process runtime; `inline` runs jobs in this process (embedded-mode commands)."""
    from slipway import runtime
    from slipway.transport import InlineTransport

    rt = runtime.build(settings, transport=InlineTransport() if inline else None)
    runtime.install(rt)
    return rt


def parse_duration(text: str) -> timedelta:
    """'30d', '72h', '15m', '90s' as a timedelta."""
    units = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit():
        raise click.BadParameter(f"{text!r}: use a number and a unit, e.g. 30d, 72h, 15m")
    return timedelta(**{units[text[-1]]: int(text[:-1])})


@click.group()
@click.version_option(package_name="slipway")
def main() -> None:
    """Slipway: GitOps deployments for GitHub."""


@main.command()
def serve() -> None:
    """Run the web server (embedded mode: also the worker thread and the sweeper)."""
    from models.db import pending_migrations, upgrade
    from slipway.server import run

    settings = _settings()
    if settings.database_url.startswith("sqlite"):
        upgrade(settings.database_url)  # the embedded default sets itself up
    elif pending_migrations(settings.database_url):
        raise click.ClickException("the database schema is behind; run `slipway db upgrade` first")
    run(settings)


@main.command()
@click.option("--burst", is_flag=True, help="Exit when the queue is empty.")
def worker(burst: bool) -> None:
    """Run an RQ worker for the `slipway` queue, with the sweeper (needs REDIS_URL)."""
    from slipway.server import run_worker

    settings = _settings()
    if settings.embedded:
        raise click.ClickException("REDIS_URL is not set: in embedded mode `slipway serve` runs the jobs itself")
    run_worker(settings, burst=burst)


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply pending Alembic migrations."""
    from models.db import upgrade

    settings = _settings()
    upgrade(settings.database_url)
    click.echo("database schema is up to date", err=True)


@main.group()
def keys() -> None:
    """Create, list and revoke API keys."""


@keys.command("create")
@click.option("--name", required=True)
@click.option("--scope", type=click.Choice(["deploy", "read", "admin"]), default="deploy", show_default=True)
@click.option("--environment", "environments", multiple=True, help="Limit a deploy key to these environments.")
@click.option("--rate", default=None, help="Rate limit, e.g. 60/minute.")
def keys_create(name: str, scope: str, environments: tuple[str, ...], rate: str | None) -> None:
    """Create a key and print it once, alone on the last line of standard output."""
    from app.apikeys import create_key
    from slipway.ratelimit import parse_rate

    if rate is not None and parse_rate(rate) is None:
        raise click.BadParameter(f"{rate!r}: use N/second, N/minute, N/hour or N/day", param_hint="--rate")
    rt = _runtime(_settings(), inline=True)
    row, plaintext = create_key(rt.engine, name, scope, list(environments), rate)
    click.echo(f"created key {row.id} ({row.name}, scope {row.scope}); it will not be shown again", err=True)
    click.echo(plaintext)


@keys.command("list")
def keys_list() -> None:
    """List keys (never the keys themselves)."""
    from app.apikeys import list_keys

    rt = _runtime(_settings(), inline=True)
    click.echo(f"{'ID':>4}  {'NAME':20} {'SCOPE':6} {'PREFIX':11} {'ENVIRONMENTS':20} {'RATE':12} STATE")
    for k in list_keys(rt.engine):
        envs = ",".join(k.environments or []) or "*"
        state = f"revoked {k.revoked_at:%Y-%m-%d}" if k.revoked_at else "active"
        click.echo(f"{k.id:>4}  {k.name[:20]:20} {k.scope:6} {k.prefix:11} {envs[:20]:20} {k.rate or '-':12} {state}")


@keys.command("revoke")
@click.argument("key_id", type=int)
def keys_revoke(key_id: int) -> None:
    """Revoke a key; it stops working at once."""
    from app.apikeys import revoke_key

    rt = _runtime(_settings(), inline=True)
    if not revoke_key(rt.engine, key_id):
        raise click.ClickException(f"no active key with id {key_id}")
    click.echo(f"revoked key {key_id}", err=True)


@main.command()
@click.argument("guid")
def replay(guid: str) -> None:
    """Run a stored delivery again."""
    from workers import inbox

    settings = _settings()
    rt = _runtime(settings, inline=settings.embedded)
    if not inbox.requeue(rt.engine, guid):
        raise click.ClickException(f"no finished delivery {guid!r} (unknown, or still queued or processing)")
    rt.transport.enqueue([guid])
    if settings.embedded:
        click.echo(f"{guid}: {rt.transport.results[-1]}")
    else:
        click.echo(f"{guid}: queued")


@main.command()
def sweep() -> None:
    """Queue deliveries that are stuck or were never queued (embedded mode: run them now)."""
    from workers.sweeper import sweep_once

    settings = _settings()
    rt = _runtime(settings, inline=settings.embedded)
    result = sweep_once(rt)
    click.echo(f"queued {result.queued}, failed {result.failed}")


@main.command()
@click.option("--older-than", "older_than", default="30d", show_default=True)
def prune(older_than: str) -> None:
    """Delete finished deliveries received before the cut-off."""
    from workers.maintenance import prune_deliveries

    rt = _runtime(_settings(), inline=True)
    total = prune_deliveries(rt.engine, parse_duration(older_than),
                             progress=lambda n: click.echo(f"deleted {n} so far", err=True))
    click.echo(f"deleted {total} deliveries")



@main.command()
@click.option("--since", default="72h", show_default=True,
              help="How far back to look (GitHub keeps deliveries 3 days; 7 on GHES).")
@click.option("--dry-run", is_flag=True, help="Say what would be redelivered; ask GitHub for nothing.")
def redeliver(since: str, dry_run: bool) -> None:
    """Ask GitHub to redeliver the App's failed deliveries that Slipway never stored (idempotent)."""
    from workers.github import NotConfigured
    from workers.redeliver import Stopped, redeliver_failed

    settings = _settings()
    window = parse_duration(since)
    rt = _runtime(settings, inline=True)
    try:
        report = redeliver_failed(rt, window, dry_run=dry_run, progress=lambda line: click.echo(line, err=True))
    except NotConfigured as exc:
        raise click.ClickException(str(exc)) from None
    except Stopped as exc:
        click.echo(exc.report.summary())
        raise click.ClickException(f"{exc}; run `slipway redeliver` again later") from None
    click.echo(report.summary())


@main.command()
@click.option("--webhook-url", prompt="Webhook URL (https://HOST/api/github/webhooks)",
              help="Where GitHub will send webhooks: this Slipway's /api/github/webhooks.")
@click.option("--org", default=None, help="Register the App on this organisation instead of your account.")
@click.option("--name", default=None, help="The App's name (default: app.yml's); names are unique on GitHub.")
@click.option("--port", default=0, type=int, help="Local port of the setup page (default: a free one).")
@click.option("--manifest", "manifest_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The manifest (default: ./app.yml).")
@click.option("--env-file", "env_path", type=click.Path(dir_okay=False, path_type=Path), default=Path(".env"),
              show_default=True)
@click.option("--key-path", type=click.Path(dir_okay=False, path_type=Path), default=Path("slipway-private-key.pem"),
              show_default=True)
@click.option("--no-browser", is_flag=True, help="Only print the setup page's address.")
def setup(webhook_url: str, org: str | None, name: str | None, port: int, manifest_path: Path | None,
          env_path: Path, key_path: Path, no_browser: bool) -> None:
    """Register the GitHub App from app.yml (GitHub's manifest flow) and write its credentials to .env."""
    import webbrowser

    from slipway.setup import WEBHOOK_PATH, SetupError, SetupServer

    settings = _settings()
    if not webhook_url.rstrip("/").endswith(WEBHOOK_PATH):
        click.echo(f"note: Slipway receives webhooks at {WEBHOOK_PATH}; {webhook_url} does not end with it "
                   "(fine for a forwarding proxy such as smee.io)", err=True)
    try:
        server = SetupServer(settings, webhook_url=webhook_url, env_path=env_path, key_path=key_path,
                             manifest_path=manifest_path, org=org, name=name, port=port)
    except (SetupError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    with server:
        click.echo(f"Open {server.url} in your browser to register the App on GitHub (Ctrl-C to stop).", err=True)
        if not no_browser:
            webbrowser.open(server.url)
        try:
            result = server.wait()
        except SetupError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"registered {result['name']} (App id {result['app_id']}); credentials in {result['env_path']}, "
               f"private key in {result['key_path']} (mode 0600)")
    if result.get("install_url"):
        click.echo(f"next: install it on your repositories: {result['install_url']}")

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
