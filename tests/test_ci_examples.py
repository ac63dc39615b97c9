"""docs/ci-examples.md works: each example's request is taken from the doc and run with real curl against `slipway serve`.

The server runs in the embedded mode as a subprocess on a free port, in a temporary working directory, with a
key made by `slipway keys create`. Each example is run as its CI would run it (the script, its environment
with the CI's variables filled in), and the deployment it stored is read back from the database.
"""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

DOC = Path(__file__).resolve().parents[1] / "docs" / "ci-examples.md"
SHA = "38d02f1d7aab64678a7ad3eeb2ad2887ce7253f5"
EXAMPLES = ("github-actions", "jenkins", "gitlab", "argocd", "shell")

pytestmark = pytest.mark.slow


# --------------------------------------------------------------------------- reading the doc


def example(name: str) -> str:
    """The code block right after `<!-- example: NAME -->` in the doc."""
    text = DOC.read_text()
    match = re.search(rf"<!-- example: {re.escape(name)} -->\s*```[a-z]*\n(.*?)\n```", text, re.S)
    assert match, f"docs/ci-examples.md has no example marked {name!r}"
    return match.group(1)


def test_every_example_is_marked() -> None:
    """The doc marks exactly the examples this file runs."""
    assert re.findall(r"<!-- example: ([a-z-]+) -->", DOC.read_text()) == list(EXAMPLES)


def github_expressions(text: str, values: dict[str, str]) -> str:
    """Replace GitHub Actions' `${{ expr }}` by test values; an expression the test does not know fails."""

    def value(match: re.Match[str]) -> str:
        expr = match.group(1).strip()
        assert expr in values, f"the test has no value for ${{{{ {expr} }}}}"
        return values[expr]

    return re.sub(r"\$\{\{(.*?)\}\}", value, text)


# --------------------------------------------------------------------------- the server


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def slipway(args: list[str], env: dict[str, str], cwd: Path) -> str:
    """Run the slipway CLI; its standard output."""
    run = subprocess.run([sys.executable, "-m", "slipway.cli", *args], env=env, cwd=cwd, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return run.stdout


def wait_until_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Poll /healthz until the server answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "slipway serve exited early"
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("slipway serve did not come up")


class Server:
    """A running `slipway serve`: its URL, a deploy key, its database file."""

    def __init__(self, url: str, key: str, db: Path) -> None:
        self.url, self.key, self.db = url, key, db

    def deployments(self, **where: str) -> list[dict[str, Any]]:
        """Stored deployments matching column values, each with its statuses (oldest first)."""
        with sqlite3.connect(self.db) as conn:
            conn.row_factory = sqlite3.Row
            clause = " AND ".join(f"{column} = ?" for column in where) or "1 = 1"
            rows = [dict(r) for r in conn.execute(f"SELECT * FROM deployment WHERE {clause} ORDER BY id",
                                                  tuple(where.values()))]
            for row in rows:
                row["statuses"] = [r[0] for r in conn.execute(
                    "SELECT state FROM deployment_status WHERE deployment_id = ? ORDER BY created_at, id", (row["id"],))]
        return rows


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`slipway serve` in the embedded mode, in a working directory of its own."""
    cwd = tmp_path_factory.mktemp("serve")
    port = free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{cwd / 'slipway.db'}", "REDIS_URL": "", "HOST": "127.0.0.1",
           "PORT": str(port), "WEBHOOK_SECRET": "examples", "LOG_FORMAT": "text", "APP_ID": "", "PRIVATE_KEY": "",
           "PRIVATE_KEY_PATH": ""}
    slipway(["db", "upgrade"], env, cwd)
    key = slipway(["keys", "create", "--name", "ci", "--scope", "deploy", "--rate", "1000/minute"], env,
                  cwd).strip().splitlines()[-1]
    proc = subprocess.Popen([sys.executable, "-m", "slipway.cli", "serve"], env=env, cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, proc)
        yield Server(url, key, cwd / "slipway.db")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def run_script(shell: str, script: str, env: dict[str, str], *args: str) -> None:
    """Run a CI script as its runner would (clean environment plus PATH); it must succeed."""
    full = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **env}
    run = subprocess.run([shell, "-e", "-c", script, "script", *args], env=full, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, f"exit {run.returncode}\nstdout: {run.stdout}\nstderr: {run.stderr}"
    assert "could not report" not in run.stdout, run.stdout


# --------------------------------------------------------------------------- the examples


def test_github_actions(server: Server) -> None:
    """Both report steps of the workflow: one deployment that moves from in_progress to the job's status."""
    values = {"vars.SLIPWAY_URL": server.url, "secrets.SLIPWAY_DEPLOY_KEY": server.key,
              "github.repository": "octo-org/actions", "github.sha": SHA, "github.ref_name": "main",
              "github.run_id": "9001", "github.run_attempt": "1", "github.server_url": "https://github.com",
              "github.actor": "octocat", "job.status": "success"}
    job = yaml.safe_load(github_expressions(example("github-actions"), values))["jobs"]["deploy"]
    reports = [step for step in job["steps"] if "curl" in step.get("run", "")]
    assert [s["name"] for s in reports] == ["Report deployment started", "Report deployment result"]
    for step in reports:
        run_script("bash", step["run"], {**job["env"], **step.get("env", {})})
    (dep,) = server.deployments(repository="octo-org/actions")
    assert (dep["environment"], dep["sha"], dep["ref"], dep["source"], dep["build_id"], dep["status"]) == (
        "production", SHA, "main", "github_actions", "9001-1", "success")
    assert dep["log_url"] == "https://github.com/octo-org/actions/actions/runs/9001"
    assert dep["statuses"] == ["in_progress", "success"]


def jenkins_environment(pipeline: str) -> dict[str, str]:
    """The plain `NAME = 'value'` lines of the pipeline's environment block."""
    block = re.search(r"environment \{(.*?)\}", pipeline, re.S)
    assert block
    return dict(re.findall(r"^\s*(\w+)\s*=\s*'([^']*)'", block.group(1), re.M))


@pytest.mark.parametrize(("result", "status"), [("SUCCESS", "success"), ("ABORTED", "cancelled"),
                                                ("FAILURE", "failure")])
def test_jenkins(server: Server, result: str, status: str) -> None:
    """The post { always } step reports the build's result with Jenkins' own variables."""
    pipeline = example("jenkins")
    post = pipeline[pipeline.index("post {"):]
    script = textwrap.dedent(re.search(r"sh '''(.*?)'''", post, re.S).group(1))
    build = {"SUCCESS": "101", "ABORTED": "102", "FAILURE": "103"}[result]
    env = {**jenkins_environment(pipeline), "SLIPWAY_URL": server.url, "SLIPWAY_KEY": server.key,
           "BUILD_RESULT": result, "GIT_COMMIT": SHA, "GIT_BRANCH": "origin/main", "BUILD_NUMBER": build,
           "BUILD_URL": f"https://jenkins.example.com/job/hello/{build}/"}
    run_script("sh", script, env)
    (dep,) = server.deployments(repository="octo-org/hello", build_id=build)
    assert (dep["environment"], dep["sha"], dep["ref"], dep["source"], dep["status"]) == (
        "production", SHA, "main", "jenkins", status)
    assert dep["log_url"] == env["BUILD_URL"]


@pytest.mark.parametrize(("job_status", "status"), [("success", "success"), ("canceled", "cancelled"),
                                                    ("failed", "failure")])
def test_gitlab(server: Server, job_status: str, status: str) -> None:
    """The job's after_script reports $CI_JOB_STATUS with GitLab's predefined variables."""
    job = yaml.safe_load(example("gitlab"))["deploy_production"]
    script = "\n".join(job["after_script"])
    job_id = {"success": "501", "canceled": "502", "failed": "503"}[job_status]
    env = {**job["variables"], "SLIPWAY_URL": server.url, "SLIPWAY_KEY": server.key, "CI_JOB_STATUS": job_status,
           "CI_PROJECT_PATH": "group/sub/project", "CI_COMMIT_SHA": SHA, "CI_COMMIT_REF_NAME": "main",
           "CI_JOB_ID": job_id, "CI_JOB_URL": f"https://gitlab.example.com/group/sub/project/-/jobs/{job_id}",
           "GITLAB_USER_LOGIN": "ann"}
    run_script("sh", script, env)
    (dep,) = server.deployments(build_id=job_id)
    assert (dep["repository"], dep["environment"], dep["sha"], dep["source"], dep["status"]) == (
        "group/sub/project", "production", SHA, "gitlab", status)


def test_argocd(server: Server) -> None:
    """The PostSync hook Job's container, with its Secret, downward-API and Helm values filled in."""
    job = yaml.safe_load(example("argocd").replace("{{ .Values.revision }}", SHA))
    assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PostSync"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    secrets = {("slipway", "url"): server.url, ("slipway", "deploy-key"): server.key}
    env = {}
    for var in container["env"]:
        source = var.get("valueFrom", {})
        if "secretKeyRef" in source:
            env[var["name"]] = secrets[(source["secretKeyRef"]["name"], source["secretKeyRef"]["key"])]
        elif "fieldRef" in source:
            assert source["fieldRef"]["fieldPath"] == "metadata.labels['job-name']"
            env[var["name"]] = "slipway-report-x7k2p"
        else:
            env[var["name"]] = var["value"]
    assert container["command"] == ["sh", "-c"]
    for _ in range(2):  # a retried pod of the same Job reports once
        run_script("sh", container["args"][0], env)
    (dep,) = server.deployments(dedup_id="slipway-report-x7k2p")
    assert (dep["repository"], dep["environment"], dep["sha"], dep["source"], dep["status"]) == (
        "octo-org/hello", "production", SHA, "argocd", "success")
    assert dep["statuses"] == ["success"]


def test_shell_script(server: Server, tmp_path: Path) -> None:
    """slipway-report.sh, called once per status with one BUILD_ID: one deployment moved along."""
    script = tmp_path / "slipway-report.sh"
    script.write_text(example("shell") + "\n")
    script.chmod(0o755)
    env = {"PATH": os.environ["PATH"], "SLIPWAY_URL": server.url, "SLIPWAY_KEY": server.key,
           "REPOSITORY": "octo-org/scripts", "COMMIT_SHA": SHA, "BRANCH": "main", "BUILD_ID": "deploy-1", "USER": "ann"}
    for status in ("in_progress", "success"):
        run = subprocess.run([str(script), status], env=env, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
    (dep,) = server.deployments(repository="octo-org/scripts")
    assert dep["statuses"] == ["in_progress", "success"] and dep["status"] == "success"
    assert '"name": "ann"' in dep["deployer"]


def test_shell_script_refusal_is_visible(server: Server, tmp_path: Path) -> None:
    """A refused report fails the script with Slipway's message (curl --fail-with-body)."""
    script = tmp_path / "slipway-report.sh"
    script.write_text(example("shell") + "\n")
    script.chmod(0o755)
    env = {"PATH": os.environ["PATH"], "SLIPWAY_URL": server.url, "SLIPWAY_KEY": "slw_wrong",
           "REPOSITORY": "octo-org/scripts", "COMMIT_SHA": SHA, "BRANCH": "main"}
    run = subprocess.run([str(script), "success"], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 22 and "missing or invalid API key" in run.stdout
