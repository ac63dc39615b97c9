"""A GitHub-shaped `pull_request.opened` delivery body of about 25 KB, built in code for the ingest benchmark.

The shape follows GitHub's webhook payload for `pull_request` with action `opened` (action, number,
pull_request with head/base each carrying a full repository object, repository, sender,
installation), compact as GitHub sends it. Real deliveries are 20-30 KB, mostly the repository object
(three times) and the user objects; the PR description is sized so the whole body lands close to the
requested size (25 KiB by default).

Each benchmark request must carry a different body (Slipway refuses a byte-identical body under a new
delivery id as a replay), so the body is split into a fixed prefix, a per-request sequence number and a
short fixed suffix: `prefix + b"12345" + suffix`. The varying part sits at the very end, so the HMAC of
the prefix is computed once and copied for every request (see `Signer`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

API = "https://api.github.com"
WEB = "https://github.com"
CREATED = "2026-11-20T09:14:07Z"
PUSHED = "2026-11-22T07:02:51Z"


def _user(login: str, uid: int, kind: str = "User") -> dict[str, Any]:
    base = f"{API}/users/{login}"
    node = "MDQ6VXNlcj" if kind == "User" else "MDEyOk9yZ2FuaXphdGlvbj"
    return {
        "login": login, "id": uid, "node_id": f"{node}{uid:x}", "avatar_url": f"https://avatars.githubusercontent.com/u/{uid}?v=4",
        "gravatar_id": "", "url": base, "html_url": f"{WEB}/{login}", "followers_url": f"{base}/followers",
        "following_url": f"{base}/following{{/other_user}}", "gists_url": f"{base}/gists{{/gist_id}}",
        "starred_url": f"{base}/starred{{/owner}}{{/repo}}", "subscriptions_url": f"{base}/subscriptions",
        "organizations_url": f"{base}/orgs", "repos_url": f"{base}/repos", "events_url": f"{base}/events{{/privacy}}",
        "received_events_url": f"{base}/received_events", "type": kind, "user_view_type": "public", "site_admin": False,
    }


def _repo(owner: dict[str, Any], name: str, rid: int) -> dict[str, Any]:
    full = f"{owner['login']}/{name}"
    api = f"{API}/repos/{full}"
    return {
        "id": rid, "node_id": f"R_kgDO{rid:x}", "name": name, "full_name": full, "private": True, "owner": owner,
        "html_url": f"{WEB}/{full}", "description": "Payments API: ledger, payouts and the reconciliation jobs",
        "fork": False, "url": api, "forks_url": f"{api}/forks", "keys_url": f"{api}/keys{{/key_id}}",
        "collaborators_url": f"{api}/collaborators{{/collaborator}}", "teams_url": f"{api}/teams",
        "hooks_url": f"{api}/hooks", "issue_events_url": f"{api}/issues/events{{/number}}",
        "events_url": f"{api}/events", "assignees_url": f"{api}/assignees{{/user}}",
        "branches_url": f"{api}/branches{{/branch}}", "tags_url": f"{api}/tags", "blobs_url": f"{api}/git/blobs{{/sha}}",
        "git_tags_url": f"{api}/git/tags{{/sha}}", "git_refs_url": f"{api}/git/refs{{/sha}}",
        "trees_url": f"{api}/git/trees{{/sha}}", "statuses_url": f"{api}/statuses/{{sha}}",
        "languages_url": f"{api}/languages", "stargazers_url": f"{api}/stargazers",
        "contributors_url": f"{api}/contributors", "subscribers_url": f"{api}/subscribers",
        "subscription_url": f"{api}/subscription", "commits_url": f"{api}/commits{{/sha}}",
        "git_commits_url": f"{api}/git/commits{{/sha}}", "comments_url": f"{api}/comments{{/number}}",
        "issue_comment_url": f"{api}/issues/comments{{/number}}", "contents_url": f"{api}/contents/{{+path}}",
        "compare_url": f"{api}/compare/{{base}}...{{head}}", "merges_url": f"{api}/merges",
        "archive_url": f"{api}/{{archive_format}}{{/ref}}", "downloads_url": f"{api}/downloads",
        "issues_url": f"{api}/issues{{/number}}", "pulls_url": f"{api}/pulls{{/number}}",
        "milestones_url": f"{api}/milestones{{/number}}", "notifications_url": f"{api}/notifications{{?since,all,participating}}",
        "labels_url": f"{api}/labels{{/name}}", "releases_url": f"{api}/releases{{/id}}",
        "deployments_url": f"{api}/deployments", "created_at": "2023-03-02T11:40:19Z", "updated_at": PUSHED,
        "pushed_at": PUSHED, "git_url": f"git://github.com/{full}.git", "ssh_url": f"git@github.com:{full}.git",
        "clone_url": f"{WEB}/{full}.git", "svn_url": f"{WEB}/{full}", "homepage": None, "size": 48211,
        "stargazers_count": 14, "watchers_count": 14, "language": "Python", "has_issues": True, "has_projects": False,
        "has_downloads": True, "has_wiki": False, "has_pages": False, "has_discussions": False, "forks_count": 0,
        "mirror_url": None, "archived": False, "disabled": False, "open_issues_count": 37, "license": None,
        "allow_forking": False, "is_template": False, "web_commit_signoff_required": False,
        "topics": ["payments", "ledger", "python", "postgresql"], "visibility": "private", "forks": 0,
        "open_issues": 37, "watchers": 14, "default_branch": "main",
    }


def _pr_repo(repo: dict[str, Any]) -> dict[str, Any]:
    """The repository as GitHub embeds it in a PR's head and base: with the merge settings."""
    return {**repo, "allow_squash_merge": True, "allow_merge_commit": False, "allow_rebase_merge": True,
            "allow_auto_merge": True, "delete_branch_on_merge": True, "allow_update_branch": True,
            "use_squash_pr_title_as_default": True, "squash_merge_commit_message": "PR_BODY",
            "squash_merge_commit_title": "PR_TITLE", "merge_commit_message": "PR_TITLE",
            "merge_commit_title": "MERGE_MESSAGE"}


def _label(lid: int, name: str, color: str, description: str, repo_api: str) -> dict[str, Any]:
    return {"id": lid, "node_id": f"LA_kwDO{lid:x}", "url": f"{repo_api}/labels/{name.replace(' ', '%20')}",
            "name": name, "color": color, "default": False, "description": description}


_DESCRIPTION_PARAGRAPH = (
    "Payouts to the same beneficiary within one settlement window are now netted before they reach the "
    "bank adapter. The ledger keeps one entry per original payout and records the netting batch id, so the "
    "reconciliation report can still explain every movement. Idempotency keys move from the HTTP layer to "
    "the payout row; a retried request after a timeout now finds the row instead of creating a second one.\n\n"
    "- [x] migration `0042_payout_netting` (adds `netting_batch_id`, backfills nothing)\n"
    "- [x] feature flag `payouts.netting` defaults to off\n"
    "- [x] unit tests for the netting rules (same currency, same beneficiary, window boundaries)\n"
    "- [ ] load test against the sandbox bank adapter\n\n"
    "```diff\n- amount = sum(p.amount for p in payouts)\n+ amount = net(payouts, window=settlement_window(now))\n```\n\n"
)


def build_payload(target_bytes: int = 25_600) -> dict[str, Any]:
    """A `pull_request.opened` payload whose compact JSON (with the benchmark's trailing field) is about `target_bytes`."""
    org = _user("acme-payments", 91824731, "Organization")
    author = _user("mhernandez-acme", 40215577)
    repo = _repo(org, "payments-api", 612207719)
    api = repo["url"]
    number = 4312
    head_sha, base_sha = "9f2c1e47b6a0d3e58c1f7a2b4d6e8f0a1c3e5b79", "3b81d0c6e2f4a5978d1c0e2f3a4b5c6d7e8f9a01"
    labels = [_label(5120331871, "payments", "0e8a16", "Payments domain", api),
              _label(5120331902, "needs review", "fbca04", "Waiting for a reviewer", api),
              _label(5120331955, "migration", "d93f0b", "Changes the database schema", api)]
    pr_api = f"{api}/pulls/{number}"
    pull_request = {
        "url": pr_api, "id": 2214493021, "node_id": "PR_kwDOJH0zB86D_1bd", "html_url": f"{repo['html_url']}/pull/{number}",
        "diff_url": f"{repo['html_url']}/pull/{number}.diff", "patch_url": f"{repo['html_url']}/pull/{number}.patch",
        "issue_url": f"{api}/issues/{number}", "number": number, "state": "open", "locked": False,
        "title": "Net payouts per beneficiary within a settlement window", "user": author, "body": "",
        "created_at": CREATED, "updated_at": CREATED, "closed_at": None, "merged_at": None, "merge_commit_sha": None,
        "assignee": None, "assignees": [], "requested_reviewers": [],
        "requested_teams": [],
        "labels": labels, "milestone": None, "draft": False,
        "commits_url": f"{pr_api}/commits", "review_comments_url": f"{pr_api}/comments",
        "review_comment_url": f"{api}/pulls/comments{{/number}}", "comments_url": f"{api}/issues/{number}/comments",
        "statuses_url": f"{api}/statuses/{head_sha}",
        "head": {"label": "acme-payments:feature/payout-netting", "ref": "feature/payout-netting", "sha": head_sha,
                 "user": org, "repo": _pr_repo(repo)},
        "base": {"label": "acme-payments:main", "ref": "main", "sha": base_sha, "user": org, "repo": _pr_repo(repo)},
        "_links": {k: {"href": v} for k, v in {
            "self": pr_api, "html": f"{repo['html_url']}/pull/{number}", "issue": f"{api}/issues/{number}",
            "comments": f"{api}/issues/{number}/comments", "review_comments": f"{pr_api}/comments",
            "review_comment": f"{api}/pulls/comments{{/number}}", "commits": f"{pr_api}/commits",
            "statuses": f"{api}/statuses/{head_sha}"}.items()},
        "author_association": "MEMBER", "auto_merge": None, "active_lock_reason": None, "merged": False,
        "mergeable": None, "rebaseable": None, "mergeable_state": "unknown", "merged_by": None, "comments": 0,
        "review_comments": 0, "maintainer_can_modify": False, "commits": 7, "additions": 412, "deletions": 96,
        "changed_files": 14,
    }
    payload = {
        "action": "opened", "number": number, "pull_request": pull_request, "repository": {**repo, "custom_properties": {"team": "payments", "tier": "1"}},
        "sender": author,
        "installation": {"id": 48120977, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uNDgxMjA5Nzc="},
    }
    # Grow the PR description (the part that varies most in real deliveries) to reach the target size.
    size = len(render_prefix(payload)) + 40
    paragraphs = []
    while size < target_bytes:
        paragraphs.append(_DESCRIPTION_PARAGRAPH)
        size += len(json.dumps(_DESCRIPTION_PARAGRAPH)) - 2
    text = "".join(paragraphs)
    over = size - target_bytes
    if over > 0 and paragraphs:
        text = text[: max(0, len(text) - over)]
    pull_request["body"] = "## What\n\n" + text
    return payload


def render_prefix(payload: dict[str, Any]) -> bytes:
    """The compact JSON body up to where the per-request sequence number goes."""
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    assert body.endswith("}")
    # GitHub's own fields stay first; the benchmark's counter is one more top-level field at the end.
    return (body[:-1] + ',"slipway_bench":{"seq":').encode()


SUFFIX = b"}}"


class Signer:
    """Bodies `prefix + str(seq) + suffix` and their `X-Hub-Signature-256`, the prefix hashed once."""

    def __init__(self, secret: str, target_bytes: int = 25_600) -> None:
        self.prefix = render_prefix(build_payload(target_bytes))
        self.suffix = SUFFIX
        self._mac = hmac.new(secret.encode(), self.prefix, hashlib.sha256)

    def body(self, seq: int) -> bytes:
        """The request body for this sequence number."""
        return self.prefix + str(seq).encode() + self.suffix

    def signature_hex(self, seq: int) -> str:
        """HMAC-SHA256 hex of `body(seq)`, from a copy of the prefix's HMAC state."""
        mac = self._mac.copy()
        mac.update(str(seq).encode() + self.suffix)
        return mac.hexdigest()

    def signature(self, seq: int) -> str:
        """The header value."""
        return "sha256=" + self.signature_hex(seq)


if __name__ == "__main__":  # size check: python bench/payload.py
    s = Signer("x")
    b = s.body(123456)
    doc = json.loads(b)
    assert hmac.compare_digest(s.signature_hex(123456), hmac.new(b"x", b, hashlib.sha256).hexdigest())
    print(len(b), "bytes;", doc["action"], doc["pull_request"]["number"], doc["repository"]["full_name"])
