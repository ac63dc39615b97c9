"""`slipway redeliver`: failed deliveries Slipway never stored are redelivered once, against the fake GitHub."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from tests import factories
from tests.conftest import APP_ID, Deliveries
from workers.redeliver import REDELIVERY_COOLDOWN, Stopped, redeliver_failed

WINDOW = timedelta(hours=72)
LIST = r"^/app/hook/deliveries$"
ATTEMPTS = r"^/app/hook/deliveries/\d+/attempts$"


def ago(**kw: float) -> datetime:
    """A moment in the past (GitHub timestamps are whole seconds)."""
    return (datetime.now(timezone.utc) - timedelta(**kw)).replace(microsecond=0)


def run(rt, **kw):  # noqa: ANN001, ANN003, ANN201
    """redeliver_failed with its progress lines collected."""
    lines: list[str] = []
    report = redeliver_failed(rt, kw.pop("since", WINDOW), progress=lines.append, **kw)
    return report, lines


def test_only_failed_unstored_guids_are_redelivered_at_their_newest_failure(gh_rt, gh_client, fake_github) -> None:  # noqa: ANN001
    """OK somewhere → skipped; stored by Slipway → skipped; outside the window → not even listed."""
    fake = fake_github
    fake.add_hook_delivery("g-ok", "push", status_code=200, delivered_at=ago(minutes=50))
    fake.add_hook_delivery("g-healed", "push", status_code=503, delivered_at=ago(hours=5))
    fake.add_hook_delivery("g-healed", "push", status_code=200, redelivery=True, delivered_at=ago(hours=4))
    fake.add_hook_delivery("g-stored", "ping", status_code=502, delivered_at=ago(hours=3))
    Deliveries(gh_client).post("ping", factories.ping(), guid="g-stored")  # timed out for GitHub, stored by us
    fake.add_hook_delivery("g-lost", "deployment", "created", status_code=503, delivered_at=ago(hours=2))
    newest = fake.add_hook_delivery("g-lost", "deployment", "created", status_code=0, redelivery=True,
                                    delivered_at=ago(hours=1))  # an old manual redelivery failed too
    fake.add_hook_delivery("g-ancient", "push", status_code=503, delivered_at=ago(hours=80))

    report, lines = run(gh_rt)

    assert fake.redeliveries == [newest]
    assert report.redelivered == ["g-lost"]
    assert (report.listed, report.failed, report.stored, report.pending) == (6, 2, 1, 0)
    assert report.summary() == "listed 6, failed 2, already stored 1, redelivered 1"
    assert any(line.startswith("page 1: 6 deliveries") for line in lines)
    assert any("redelivered g-lost (deployment.created" in line for line in lines)
    listing = fake.calls_to("GET", LIST)
    assert listing and all(c.headers["authorization"].startswith("Bearer ey") for c in listing)  # the App JWT


def test_pages_through_the_cursor_and_stops_past_the_window(gh_rt, fake_github) -> None:  # noqa: ANN001
    """Newest first, 100 a page; paging stops on the page where --since is passed."""
    for n in range(230):
        fake_github.add_hook_delivery(f"in-{n}", "push", status_code=200, delivered_at=ago(minutes=n + 1))
    for n in range(300):
        fake_github.add_hook_delivery(f"out-{n}", "push", status_code=503, delivered_at=ago(hours=10, minutes=n))

    report, lines = run(gh_rt, since=timedelta(hours=5))

    assert report.listed == 230 and report.failed == 0 and fake_github.redeliveries == []
    listing = fake_github.calls_to("GET", LIST)
    assert len(listing) == 3  # 100 + 100 + 30 in the window (and 70 past it): no fourth page
    assert "cursor" not in listing[0].query and listing[1].query["cursor"] != listing[2].query["cursor"]
    assert [line.split(":")[0] for line in lines] == ["page 1", "page 2", "page 3"]

    everything, _ = run(gh_rt, since=timedelta(hours=72), dry_run=True)
    assert everything.listed == 530 and everything.failed == 300


def test_running_twice_asks_once_while_the_redelivery_is_under_way(gh_rt, fake_github) -> None:  # noqa: ANN001
    """GitHub records the redelivery as a new attempt; a second run sees it and does not ask again."""
    fake_github.redelivery_status_code = 503  # Slipway is still down when GitHub redelivers
    first_id = fake_github.add_hook_delivery("g-1", "push", status_code=503, delivered_at=ago(minutes=10))

    first, _ = run(gh_rt)
    second, lines = run(gh_rt)

    assert fake_github.redeliveries == [first_id]
    assert first.redelivered == ["g-1"] and second.redelivered == []
    assert second.pending == 1 and second.failed == 1
    assert second.summary() == "listed 2, failed 1, already stored 0, redelivered 0, redelivery under way 1"
    assert len(fake_github.calls_to("POST", ATTEMPTS)) == 1


def test_a_successful_redelivery_ends_it(gh_rt, fake_github) -> None:  # noqa: ANN001
    """Once the redelivery answered OK the GUID is no longer failed."""
    fake_github.add_hook_delivery("g-1", "push", status_code=503, delivered_at=ago(minutes=10))
    run(gh_rt)
    again, _ = run(gh_rt)
    assert again.failed == 0 and len(fake_github.redeliveries) == 1


def test_a_redelivery_that_failed_long_ago_is_asked_again(gh_rt, fake_github) -> None:  # noqa: ANN001
    """Past the cooldown a failed redelivery is no longer 'under way': Slipway was down then, ask again."""
    fake_github.add_hook_delivery("g-1", "push", status_code=503, delivered_at=ago(hours=3))
    retry = fake_github.add_hook_delivery("g-1", "push", status_code=503, redelivery=True,
                                          delivered_at=ago(seconds=REDELIVERY_COOLDOWN.total_seconds() + 60))
    report, _ = run(gh_rt)
    assert report.redelivered == ["g-1"] and fake_github.redeliveries == [retry]


def test_dry_run_asks_for_nothing(gh_rt, fake_github) -> None:  # noqa: ANN001
    """--dry-run lists and decides, and POSTs nothing."""
    fake_github.add_hook_delivery("g-1", "push", status_code=503, delivered_at=ago(minutes=5))
    report, lines = run(gh_rt, dry_run=True)
    assert report.summary() == "listed 1, failed 1, already stored 0, would redeliver 1"
    assert fake_github.calls_to("POST", ATTEMPTS) == []
    assert any(line.startswith("would redeliver g-1") for line in lines)


def test_rate_limit_while_listing_stops_with_nothing_asked(gh_rt, fake_github) -> None:  # noqa: ANN001
    """A primary rate limit is not waited out in a CLI: it stops, and says so."""
    fake_github.add_hook_delivery("g-1", "push", status_code=503)
    fake_github.fail_primary_rate_limit("GET", LIST, reset_in=120)
    with pytest.raises(Stopped, match="rate limit") as info:
        run(gh_rt)
    assert info.value.report.redelivered == [] and fake_github.redeliveries == []


def test_server_error_while_redelivering_stops_and_a_rerun_finishes(gh_rt, fake_github) -> None:  # noqa: ANN001
    """A 5xx on the second POST stops the run after one; the next run asks only for the rest."""
    for n in range(3):
        fake_github.add_hook_delivery(f"g-{n}", "push", status_code=503, delivered_at=ago(minutes=10 - n))
    fake_github.redelivery_status_code = 503
    fake_github.fail("POST", ATTEMPTS, status=None, times=1)  # the first POST answers normally ...
    fake_github.fail("POST", ATTEMPTS, 502, times=1)          # ... the second gets a 502
    with pytest.raises(Stopped, match="502") as info:
        run(gh_rt)
    assert info.value.report.redelivered == ["g-2"] and len(fake_github.redeliveries) == 1

    report, _ = run(gh_rt)
    assert sorted(report.redelivered) == ["g-0", "g-1"] and report.pending == 1
    assert len(fake_github.redeliveries) == 3


def test_a_guid_github_refuses_is_reported_and_the_rest_go_on(gh_rt, fake_github) -> None:  # noqa: ANN001
    """A 422 (e.g. past GitHub's redelivery window) skips that one GUID only."""
    refused = fake_github.add_hook_delivery("g-old", "push", status_code=503, delivered_at=ago(hours=60))
    fake_github.add_hook_delivery("g-new", "push", status_code=503, delivered_at=ago(hours=1))
    fake_github.fail("POST", rf"/deliveries/{refused}/attempts$", 422, times=None)
    report, _ = run(gh_rt)
    assert report.redelivered == ["g-new"] and report.refused == ["g-old"]
    assert report.summary().endswith("redelivered 1, refused by GitHub 1")


# ---------------------------------------------------------------- the command


@pytest.fixture
def cli_env(fake_github, sqlite_url: str, tmp_path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN001, ANN201
    """Environment for `slipway` pointed at the fake GitHub and a migrated SQLite database."""
    monkeypatch.chdir(tmp_path)
    for name, value in {"DATABASE_URL": sqlite_url, "APP_ID": str(APP_ID), "GITHUB_API_URL": fake_github.url,
                        "PRIVATE_KEY": fake_github.private_key_pem.decode(), "GITHUB_TIMEOUT": "2",
                        "WEBHOOK_SECRET": "s3cret-value", "LOG_FORMAT": "json"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("REDIS_URL", raising=False)
    return fake_github


def slipway(*args: str):  # noqa: ANN201
    """Run the CLI in-process."""
    from slipway.cli import main

    return CliRunner().invoke(main, list(args))


def test_command_prints_progress_on_stderr_and_the_summary_on_stdout(cli_env) -> None:  # noqa: ANN001
    """stdout is exactly the summary line; paging progress goes to stderr."""
    cli_env.add_hook_delivery("g-1", "push", status_code=503, delivered_at=ago(hours=1))
    result = slipway("redeliver", "--since", "72h")
    assert result.exit_code == 0, result.output
    assert result.stdout == "listed 1, failed 1, already stored 0, redelivered 1\n"
    assert "page 1: 1 deliveries" in result.stderr and "redelivered g-1" in result.stderr
    dry = slipway("redeliver", "--dry-run")
    assert dry.exit_code == 0 and dry.stdout == "listed 2, failed 0, already stored 0, would redeliver 0\n"  # the redelivery answered OK


def test_command_exits_non_zero_on_rate_limit_and_bad_input(cli_env) -> None:  # noqa: ANN001
    """Rate limit → clear message and exit 1; a bad --since → usage error; no App → clear message."""
    cli_env.fail_secondary_rate_limit("GET", LIST, retry_after=30)
    result = slipway("redeliver")
    assert result.exit_code == 1
    assert "rate limit" in result.stderr and "run `slipway redeliver` again later" in result.stderr
    assert result.stdout == "listed 0, failed 0, already stored 0, redelivered 0\n"
    assert slipway("redeliver", "--since", "3 days").exit_code == 2


def test_command_without_an_app_says_so(cli_env, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """APP_ID unset: the command explains instead of failing with a traceback."""
    monkeypatch.setenv("APP_ID", "")
    result = slipway("redeliver")
    assert result.exit_code == 1 and "APP_ID" in result.stderr


def test_command_with_a_key_github_rejects_stops(cli_env, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """A JWT GitHub refuses (401) stops with a hint about APP_ID and the key."""
    from tests.fakegithub import new_private_key_pem

    # Another App id as well: githubkit caches JWTs per process by issuer, and this process made valid ones.
    monkeypatch.setenv("APP_ID", "777")
    monkeypatch.setenv("PRIVATE_KEY", new_private_key_pem().decode())
    result = slipway("redeliver")
    assert result.exit_code == 1 and "401" in result.stderr and "private key" in result.stderr
