"""DORA definitions (docs/dora.md) on hand-computed histories: app/dora.py is pure, so no database here."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from app.dora import DeployRow, percentile, rolled_back, summarize

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
H, D, M = timedelta(hours=1), timedelta(days=1), timedelta(minutes=1)
WEEK = (T0, T0 + 7 * D)


def row(id: int, sha: str | None, *, created: datetime, deployed: datetime | None = None,
        failed: datetime | None = None, committed: datetime | None = None, env: str = "production",
        owner: str = "o/r", version: str | None = None, counted: bool = True) -> DeployRow:
    """One deployment, by hand."""
    return DeployRow(id=id, owner=owner, environment=env, created_at=created, sha=sha, version=version,
                     deployed_at=deployed, failed_at=failed, committed_at=committed, counted=counted)


def week_history() -> list[DeployRow]:
    """A week of production with a failure, a rollback, a redeploy, a pending deploy and an open incident."""
    return [
        row(1, "a", created=T0 - 2 * D, deployed=T0 - 2 * D + 5 * M),  # before the period (the baseline)
        row(2, "b", created=T0 + H, deployed=T0 + H + 30 * M, committed=T0),  # lead 1h30
        row(3, "c", created=T0 + D, failed=T0 + D + 10 * M),  # a failed deploy: the incident begins
        row(4, "d", created=T0 + D + H, deployed=T0 + D + 2 * H),  # restores after 1h50; lead from first_seen
        row(5, "e", created=T0 + 2 * D - 5 * M, deployed=T0 + 2 * D, committed=T0 + D),  # lead 1 day; rolled back
        row(6, "d", created=T0 + 2 * D + 20 * M, deployed=T0 + 2 * D + 30 * M),  # the rollback: a redeploy of d
        row(7, "f", created=T0 + 3 * D),  # still pending: not counted anywhere
        row(8, "g", created=T0 + 6 * D, failed=T0 + 6 * D + 5 * M),  # failed, nothing after it: unrestored
    ]


def test_week_by_hand() -> None:
    """Every figure of the week, computed by hand in the comments of week_history()."""
    got = summarize(week_history(), *WEEK, first_seen={("o/r", "d"): T0 + D})
    assert got["deployment_frequency"] == {"deployments": 4, "per_day": round(4 / 7, 4), "days_with_deployments": 3}
    # Lead times 5400 (b), 7200 (d: first seen T0+1d by a gate decision), 86400 (e); 6 is a redeploy of d.
    assert got["lead_time_for_changes"] == {
        "count": 3, "median_seconds": 7200.0, "p90_seconds": 70560.0,  # 7200 + 0.8 * (86400 - 7200)
        "excluded": {"baseline": 0, "redeploys": 1, "without_commit_time": 0}}
    # Finished: 2, 3, 4, 5, 6, 8; failed 3 and 8; 5 was rolled back by 6 (which put d back).
    assert got["change_failure_rate"] == {"rate": 0.5, "failed": 2, "rolled_back": 1, "deployments": 6}
    # Incidents: 3 (1h50 = 6600 s until 4), 5 (30 min = 1800 s until 6), 8 (open).
    assert got["time_to_restore"] == {"count": 2, "median_seconds": 4200.0, "p90_seconds": 6120.0, "unrestored": 1}


def test_week_series() -> None:
    """One entry per UTC day: successes, change failures (failed or rolled back) and the median lead time."""
    series = summarize(week_history(), *WEEK, first_seen={("o/r", "d"): T0 + D})["series"]
    assert [s["date"] for s in series] == [f"2026-03-0{d}" for d in range(1, 8)]
    assert [(s["deployments"], s["change_failures"], s["lead_time_median_seconds"]) for s in series] == [
        (1, 0, 5400.0), (1, 1, 7200.0), (2, 1, 86400.0), (0, 0, None), (0, 0, None), (0, 0, None), (0, 1, None)]


def test_first_deployment_of_an_environment_is_the_baseline() -> None:
    """The first success brings years of history with it: it is no change and has no lead time."""
    rows = [row(1, "x", created=T0 + H, deployed=T0 + H, committed=T0 - 900 * D),
            row(2, "y", created=T0 + 2 * H, deployed=T0 + 3 * H, committed=T0 + 2 * H)]
    lead = summarize(rows, *WEEK)["lead_time_for_changes"]
    assert lead["count"] == 1 and lead["median_seconds"] == 3600.0
    assert lead["excluded"]["baseline"] == 1
    # Its deployment still counts as a deployment.
    assert summarize(rows, *WEEK)["deployment_frequency"]["deployments"] == 2


def test_baseline_is_per_environment() -> None:
    """Each environment's first success is its own baseline."""
    rows = [row(1, "x", created=T0, deployed=T0 + H, committed=T0, env="staging"),
            row(2, "x", created=T0 + D, deployed=T0 + D + H, committed=T0, env="production")]
    assert summarize(rows, *WEEK)["lead_time_for_changes"]["excluded"]["baseline"] == 2


def test_earliest_known_time_dates_a_commit_without_ci_data() -> None:
    """No commit time reported: the first time Slipway saw the commit anywhere (here: staging) dates it."""
    rows = [row(1, "a", created=T0 - D, deployed=T0 - D, env="production"),  # production's baseline
            row(2, "b", created=T0 + H, deployed=T0 + 2 * H, env="staging"),
            row(3, "b", created=T0 + D, deployed=T0 + D + 30 * M, env="production")]
    lead = summarize(rows, *WEEK)["lead_time_for_changes"]
    # staging's b is its baseline; production's b: from T0+1h (first seen) to T0+1d30m.
    assert lead["count"] == 1 and lead["median_seconds"] == (D + 30 * M - H).total_seconds()


def test_reported_commit_time_wins_and_never_goes_negative() -> None:
    """A CI's commit time is used; one after the deployment (clock skew) counts as zero."""
    rows = [row(1, "a", created=T0 - D, deployed=T0 - D),
            row(2, "b", created=T0 + H, deployed=T0 + 2 * H, committed=T0 + 3 * H)]
    assert summarize(rows, *WEEK)["lead_time_for_changes"]["median_seconds"] == 0.0


def test_consecutive_failures_are_one_incident() -> None:
    """Failures while the environment is still down belong to the incident that began first."""
    rows = [row(1, "a", created=T0 - D, deployed=T0 - D),
            row(2, "b", created=T0 + H, failed=T0 + H),
            row(3, "c", created=T0 + 2 * H, failed=T0 + 2 * H),
            row(4, "d", created=T0 + 3 * H, deployed=T0 + 3 * H)]
    got = summarize(rows, *WEEK)
    assert got["time_to_restore"] == {"count": 1, "median_seconds": 7200.0, "p90_seconds": 7200.0, "unrestored": 0}
    assert got["change_failure_rate"] == {"rate": round(2 / 3, 4), "failed": 2, "rolled_back": 0, "deployments": 3}


def test_restore_after_the_period_counts_when_known() -> None:
    """An incident that began in the period is measured to its restore even after the period."""
    rows = [row(1, "a", created=T0 + 6 * D, failed=T0 + 6 * D + 23 * H),
            row(2, "b", created=T0 + 8 * D, deployed=T0 + 8 * D, counted=False)]
    assert summarize(rows, *WEEK)["time_to_restore"]["median_seconds"] == (D + H).total_seconds()


def test_failures_are_per_environment() -> None:
    """A success in staging does not restore production."""
    rows = [row(1, "a", created=T0 + H, failed=T0 + H, env="production"),
            row(2, "b", created=T0 + 2 * H, deployed=T0 + 2 * H, env="staging")]
    assert summarize(rows, *WEEK)["time_to_restore"]["unrestored"] == 1


def test_rollback_needs_the_previous_version_back() -> None:
    """b is rolled back when the next success redeploys a (what ran before b); moving on to c is no rollback."""
    live = [row(1, "a", created=T0, deployed=T0), row(2, "b", created=T0 + H, deployed=T0 + H),
            row(3, "a", created=T0 + 2 * H, deployed=T0 + 2 * H)]
    assert rolled_back(live) == {2}
    onward = [*live[:2], row(3, "c", created=T0 + 2 * H, deployed=T0 + 2 * H)]
    assert rolled_back(onward) == set()
    # Without a sha the version tells what ran.
    versions = [row(i, None, version=v, created=T0 + i * H, deployed=T0 + i * H) for i, v in
                enumerate(["v1", "v2", "v1"], start=1)]
    assert rolled_back(versions) == {2}


def test_membership_is_by_finish_time_and_half_open() -> None:
    """A deployment belongs to the period in which it went live (or failed); `until` is excluded."""
    rows = [row(1, "a", created=T0 - H, deployed=T0),  # created before, live at since: in
            row(2, "b", created=T0 + D, deployed=T0 + 7 * D),  # live at until: out
            row(3, "c", created=T0 + 2 * D),  # never finished: out
            row(4, "d", created=T0 + 3 * D, deployed=T0 + 3 * D, counted=False)]  # context: out
    assert summarize(rows, *WEEK)["deployment_frequency"]["deployments"] == 1


def test_redeploys_are_not_changes() -> None:
    """The same commit going live again (restart, rollback) has no new lead time."""
    rows = [row(1, "a", created=T0 - D, deployed=T0 - D), row(2, "b", created=T0, deployed=T0 + H, committed=T0),
            row(3, "b", created=T0 + D, deployed=T0 + D, committed=T0)]
    lead = summarize(rows, *WEEK)["lead_time_for_changes"]
    assert lead["count"] == 1 and lead["excluded"]["redeploys"] == 1


def test_empty_period() -> None:
    """No deployments: zero counts, no rates, no medians; the series still has every day."""
    got = summarize([], *WEEK)
    assert got["deployment_frequency"] == {"deployments": 0, "per_day": 0.0, "days_with_deployments": 0}
    assert got["change_failure_rate"]["rate"] is None
    assert got["lead_time_for_changes"]["median_seconds"] is None
    assert got["time_to_restore"] == {"count": 0, "median_seconds": None, "p90_seconds": None, "unrestored": 0}
    assert len(got["series"]) == 7


def test_short_period_series_spans_its_dates() -> None:
    """A 24-hour period from noon to noon touches two UTC dates."""
    got = summarize([], T0 + 12 * H, T0 + 36 * H)
    assert [s["date"] for s in got["series"]] == ["2026-03-01", "2026-03-02"]
    assert got["deployment_frequency"]["per_day"] == 0.0


@pytest.mark.parametrize(("values", "q", "expected"), [
    ([], 0.5, None), ([5.0], 0.9, 5.0), ([1.0, 2.0, 3.0, 4.0], 0.5, 2.5), ([1.0, 2.0, 3.0, 4.0], 0.9, 3.7),
    ([4.0, 1.0, 3.0, 2.0], 0.5, 2.5), ([10.0, 20.0, 30.0], 0.9, 28.0),
])
def test_percentile_interpolates_between_ranks(values: list[float], q: float, expected: float | None) -> None:
    """Linear interpolation between the closest ranks (numpy's default)."""
    got = percentile(values, q)
    assert got == pytest.approx(expected) if expected is not None else got is None
