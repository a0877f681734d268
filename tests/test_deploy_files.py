"""deploy/ (issue 19): the production layout's files name only commands and settings the code
knows, and its example settings load as `reengage serve|worker` would load them. No container
engine runs here, so the Containerfile is checked for what it runs, not built."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from server.cli.main import LONG_RUNNING_ROLES, build_parser
from server.config import Settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
SETTING = re.compile(r"\b((?:REENGAGE|TWILIO|SLACK|OTEL)_[A-Z0-9_]+)")
# read by the CLI's commands rather than by Settings (server/cli/discovery.py, main.py)
CLI_SETTINGS = {"REENGAGE_LOG_LEVEL", "REENGAGE_GRPC_TARGET", "REENGAGE_API_KEY"}
# the test harness's (tests/conftest.py; the browser tests' tests/dashboard_browser_support.py)
TEST_SETTINGS = {
    "REENGAGE_TEST_DATABASE_URL",
    "REENGAGE_REQUIRE_BROWSER",
    "REENGAGE_REQUIRE_APERTIUM",
}


def known_settings() -> set[str]:
    code = (ROOT / "server/config.py").read_text()
    return set(SETTING.findall(code)) | CLI_SETTINGS | TEST_SETTINGS


def env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def test_every_setting_named_in_deploy_and_the_operations_doc_is_read_by_the_code() -> None:
    known = known_settings()
    named: dict[str, set[str]] = {}
    docs = [ROOT / "docs/operations.md", ROOT / "README.md"]
    for path in [*DEPLOY.rglob("*"), *docs]:
        if path.is_file() and path.suffix != ".yml":
            for name in SETTING.findall(path.read_text()):
                named.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    assert named, "the deploy files name no settings"
    unknown = {name: where for name, where in named.items() if name not in known}
    # OTEL_* beyond the endpoint are read by OpenTelemetry itself (service name, headers)
    unknown = {n: w for n, w in unknown.items() if not n.startswith("OTEL_")}
    assert unknown == {}


@pytest.mark.parametrize("role", ["serve", "worker"])
def test_the_example_settings_load(role: str, tmp_path: Path) -> None:
    env = env_file(DEPLOY / f"env/{role}.env.example")
    settings = Settings.from_env(env)
    assert settings.database_url and settings.database_url.startswith("postgresql://")
    assert settings.temporal_address and settings.temporal_namespace != "default"
    assert settings.temporal_tls and settings.temporal_api_key  # Temporal Cloud: an API key
    assert settings.metrics_port == 9464 and settings.metrics_token
    assert settings.log_format == "json" and settings.carrier == "twilio"
    assert settings.public_url.startswith("https://")
    # the secrets (tokens, keys, the database password) stay out of repr, and so out of logs
    assert "CHANGE-ME" not in repr(settings)

    # the mTLS variant of the same file: the commented-out certificate settings, with files
    commented = [
        line.lstrip("# ").partition("=")
        for line in (DEPLOY / f"env/{role}.env.example").read_text().splitlines()
        if line.startswith("# REENGAGE_TEMPORAL_TLS_")
    ]
    if commented:
        mtls = {k: v for k, v in env.items() if k != "REENGAGE_TEMPORAL_API_KEY"}
        for name, _, value in commented:
            path = tmp_path / Path(value).name
            path.write_text("-----BEGIN CERTIFICATE-----\n")
            mtls[name] = str(path) if value.startswith("/") else value
        settings = Settings.from_env(mtls)
        assert settings.temporal_tls_cert and settings.temporal_tls_key and settings.temporal_tls_ca
        assert settings.temporal_tls_server_name and not settings.temporal_api_key


def test_the_units_and_the_image_run_commands_the_cli_has() -> None:
    commands = {
        name
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
        for name in action.choices
    }
    run = []
    for unit in (DEPLOY / "systemd").glob("*.service"):
        lines = unit.read_text().splitlines()
        start = [line.split("=", 1)[1] for line in lines if line.startswith("ExecStart=")]
        files = [line.split("=", 1)[1] for line in lines if line.startswith("EnvironmentFile=")]
        assert len(start) == 1 and start[0].startswith("/opt/reengage/bin/reengage ")
        run.append(start[0].split()[-1])
        assert files and Path(files[0]).name.replace(".env", "") in ("serve", "worker")
        assert "KillSignal=SIGTERM" in lines
    image = (DEPLOY / "Containerfile").read_text()
    run += re.findall(r'^CMD \["(\w+)"\]', image, re.M)
    assert sorted(run) == ["serve", "serve", "worker"]
    assert set(run) <= commands & LONG_RUNNING_ROLES
    assert 'ENTRYPOINT ["/opt/reengage/venv/bin/reengage"]' in image
    assert "USER reengage" in image  # not root
