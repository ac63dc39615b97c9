"""Dockerfile, .dockerignore and docker-compose.yml: Docker cannot run here, so their essentials are parsed and checked."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT.parent / "shared" / "SPEC.md"
# SPEC section 2; checked against SPEC.md itself when it is there.
SPEC_VARIABLES = {"DATABASE_URL", "REDIS_URL", "APP_ID", "PRIVATE_KEY", "PRIVATE_KEY_PATH", "WEBHOOK_SECRET",
                  "GITHUB_API_URL", "HOST", "PORT", "WEB_CONCURRENCY", "SLIPWAY_CONFIG", "LOG_LEVEL", "LOG_FORMAT"}


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in (ROOT / "Dockerfile").read_text().splitlines()
                                         if not line.lstrip().startswith("#")))
    out = []
    for line in text.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def exec_form(args: str) -> list[str]:
    """A JSON exec-form argument list."""
    value = json.loads(args)
    assert isinstance(value, list), f"not exec form: {args}"
    return value


@pytest.fixture(scope="module")
def compose() -> dict:
    """docker-compose.yml, parsed."""
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_spec_variables_are_the_ones_listed() -> None:
    """The variable list used below is SPEC section 2's (the first column of its table)."""
    if not SPEC.exists():
        pytest.skip("SPEC.md not beside the project")
    section = SPEC.read_text().split("\n## 2.", 1)[1].split("\n## ", 1)[0]
    first_cells = [row.split("|")[1] for row in section.splitlines() if row.startswith("| `")]
    assert {name for cell in first_cells for name in re.findall(r"`([A-Z_]+)`", cell)} == SPEC_VARIABLES


def test_dockerfile_base_install_user_entrypoint() -> None:
    """python:3.11-slim, `pip install .`, a non-root USER after the install, `slipway` as the entrypoint."""
    steps = instructions()
    kinds = [k for k, _ in steps]
    assert steps[0] == ("FROM", "python:3.11-slim")
    runs = [i for i, (k, a) in enumerate(steps) if k == "RUN"]
    assert any(re.search(r"\bpip install \.(\s|$)", steps[i][1]) for i in runs)
    users = [a for k, a in steps if k == "USER"]
    assert users and users[-1] not in ("root", "0") and not users[-1].startswith("0:")
    assert kinds.index("USER") > max(runs), "every RUN must happen before switching to the non-root user"
    assert exec_form(dict(steps)["ENTRYPOINT"]) == ["slipway"]
    assert exec_form(dict(steps)["CMD"]) == ["serve"]
    env = " ".join(a for k, a in steps if k == "ENV")
    assert "HOST=0.0.0.0" in env


def test_dockerfile_copies_only_what_exists_and_what_pip_needs() -> None:
    """Every COPY source exists; the packages pyproject installs are all copied."""
    copied = set()
    for kind, args in instructions():
        if kind == "COPY":
            *sources, _dest = shlex.split(args)
            for src in sources:
                assert (ROOT / src).exists(), f"COPY {src}: no such file"
                copied.add(src)
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert {"pyproject.toml", project["project"]["readme"], *packages} <= copied


def test_healthcheck_command_really_checks_healthz(tmp_path: Path) -> None:
    """The HEALTHCHECK is Python's urllib against /healthz on $PORT: it passes on a live app, fails on none."""
    from werkzeug.serving import make_server

    from app import create_app
    from slipway import runtime
    from slipway.settings import load_settings

    (check,) = [a for k, a in instructions() if k == "HEALTHCHECK"]
    assert re.search(r"--interval=\S+", check) and re.search(r"--timeout=\S+", check)
    command = exec_form(check.split("CMD", 1)[1].strip())
    assert command[0] == "python" and "urllib" in command[-1] and "/healthz" in command[-1]

    rt = runtime.build(load_settings(_env_file=None, database_url=f"sqlite:///{tmp_path}/h.db"))
    server = make_server("127.0.0.1", 0, create_app(rt=rt))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {**os.environ, "PORT": str(server.server_port)}
        argv = [sys.executable, *command[1:]]
        assert subprocess.run(argv, env=env, timeout=20, capture_output=True).returncode == 0
    finally:
        server.shutdown()
        rt.close()
    assert subprocess.run(argv, env=env, timeout=20, capture_output=True).returncode != 0  # nothing listens now


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    """No .env, keys, databases, virtualenv or git history in the build context."""
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".env", "*.pem", "slipway.db*", ".venv", ".git"} <= ignored
    assert "README.md" not in ignored and "migrations" not in ignored  # pip install . needs them


def test_compose_services_and_order(compose: dict) -> None:
    """web, 2 workers, postgres:15 on a named volume, redis:7 with AOF and noeviction, migrate first."""
    services = compose["services"]
    assert set(services) == {"web", "worker", "postgres", "redis", "migrate"}
    assert services["migrate"]["command"] == ["db", "upgrade"] and services["migrate"]["restart"] == "no"
    assert services["web"]["command"] == ["serve"] and services["worker"]["command"] == ["worker"]
    assert services["worker"]["deploy"]["replicas"] == 2
    for name in ("web", "worker"):
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        assert deps["postgres"]["condition"] == deps["redis"]["condition"] == "service_healthy"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"

    pg = services["postgres"]
    assert pg["image"] == "postgres:15"
    (volume,) = pg["volumes"]
    source, target = volume.split(":")[:2]
    assert target == "/var/lib/postgresql/data" and source in compose["volumes"]
    assert "healthcheck" in pg

    redis = services["redis"]
    assert redis["image"] == "redis:7"
    command = " ".join(redis["command"]) if isinstance(redis["command"], list) else redis["command"]
    assert re.search(r"--appendonly\s+yes", command) and re.search(r"--maxmemory-policy\s+noeviction", command)
    assert any(v.split(":")[0] in compose["volumes"] for v in redis["volumes"])  # the AOF survives a restart


def test_compose_passes_every_spec_variable_to_slipway(compose: dict) -> None:
    """web, worker and migrate get every SPEC variable; production mode; the web answers from outside."""
    for name in ("web", "worker", "migrate"):
        env = compose["services"][name]["environment"]
        assert SPEC_VARIABLES <= set(env), f"{name} lacks {sorted(SPEC_VARIABLES - set(env))}"
        assert env["DATABASE_URL"].startswith("postgresql://") and "@postgres:5432/" in env["DATABASE_URL"]
        assert env["REDIS_URL"].startswith("redis://redis:6379")
        assert env["HOST"] == "0.0.0.0"
    web = compose["services"]["web"]
    assert any(str(p).endswith(":3000") for p in web["ports"])
    assert compose["services"]["worker"]["healthcheck"] == {"disable": True}  # no HTTP in a worker


def test_compose_key_is_a_secret_file_not_an_image_layer(compose: dict) -> None:
    """The private key reaches the containers as a mounted secret at PRIVATE_KEY_PATH."""
    env = compose["services"]["web"]["environment"]
    assert env["PRIVATE_KEY_PATH"] == "/run/secrets/github_app_key"
    assert "github_app_key" in compose["services"]["web"]["secrets"]
    assert "file" in compose["secrets"]["github_app_key"]
