"""Settings from the environment (design §10). Secrets are kept out of repr() and logs."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    temporal_address: str | None = None
    temporal_namespace: str = "default"
    task_queue: str = "reengage"
    grpc_port: int = 50051
    http_port: int = 8080
    bind_host: str = "127.0.0.1"
    public_url: str = "http://localhost:8080"
    data_dir: Path = Path(".reengage")
    carrier: str = "outbox"
    sends_per_second: float = 1.0  # per sender number
    scan_interval_minutes: int = 60  # the inactivity scan's schedule; 0: no schedule
    digest_schedule: bool = True  # the weekly digest's hourly schedule (REENGAGE_DIGEST_SCHEDULE)
    embedded_pg_port: int = 54329
    temporal_port: int = 7233
    temporal_ui_port: int = 8233
    twilio_account_sid: str = ""
    twilio_auth_token: str = field(default="", repr=False)
    twilio_api_base: str = "https://api.twilio.com"
    slack_bot_token: str = field(default="", repr=False)
    slack_signing_secret: str = field(default="", repr=False)
    slack_api_base: str = "https://slack.com/api/"
    # outbound webhooks (docs/integrations.md): deliver to loopback, private, link-local and
    # metadata addresses (development and tests only), and accept http:// endpoints
    webhooks_allow_private: bool = False
    webhooks_allow_http: bool = False
    # how long the gRPC server remembers an API key it authenticated (tenants.org.api_keys):
    # a key revoked on another server stops working within it (0: ask the database every call)
    auth_cache_seconds: float = 5.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        e = dict(os.environ if env is None else env)

        def port(name: str, default: int) -> int:
            raw = e.get(name, "")
            if not raw:
                return default
            if not raw.isdigit() or not 0 < int(raw) < 65536:
                raise SystemExit(f"{name}={raw!r} is not a TCP port")
            return int(raw)

        def minutes(name: str, default: int) -> int:
            raw = e.get(name, "")
            if not raw:
                return default
            if not raw.isdigit() or int(raw) > 7 * 24 * 60:
                raise SystemExit(f"{name}={raw!r} is not a number of minutes (0 to 10080)")
            return int(raw)

        def seconds(name: str, default: float) -> float:
            raw = e.get(name, "").strip()
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                value = -1.0
            if not 0 <= value <= 300:
                raise SystemExit(f"{name}={raw!r} is not a number of seconds (0 to 300)")
            return value

        def switch(name: str, default: bool) -> bool:
            raw = e.get(name, "").strip().lower()
            if not raw:
                return default
            if raw not in ("0", "1", "true", "false", "on", "off"):
                raise SystemExit(f"{name}={raw!r}: 1 (on) or 0 (off)")
            return raw in ("1", "true", "on")

        return cls(
            database_url=e.get("REENGAGE_DATABASE_URL") or None,
            temporal_address=e.get("REENGAGE_TEMPORAL_ADDRESS") or None,
            temporal_namespace=e.get("REENGAGE_TEMPORAL_NAMESPACE") or "default",
            task_queue=e.get("REENGAGE_TASK_QUEUE") or "reengage",
            sends_per_second=float(e.get("REENGAGE_SENDS_PER_SECOND") or 1.0),
            scan_interval_minutes=minutes("REENGAGE_SCAN_INTERVAL_MINUTES", 60),
            digest_schedule=switch("REENGAGE_DIGEST_SCHEDULE", True),
            grpc_port=port("REENGAGE_GRPC_PORT", 50051),
            http_port=port("REENGAGE_HTTP_PORT", 8080),
            bind_host=e.get("REENGAGE_BIND_HOST") or "127.0.0.1",
            public_url=e.get("REENGAGE_PUBLIC_URL") or "http://localhost:8080",
            data_dir=Path(e.get("REENGAGE_DATA_DIR") or ".reengage"),
            carrier=e.get("REENGAGE_CARRIER") or "outbox",
            embedded_pg_port=port("REENGAGE_EMBEDDED_PG_PORT", 54329),
            temporal_port=port("REENGAGE_TEMPORAL_PORT", 7233),
            temporal_ui_port=port("REENGAGE_TEMPORAL_UI_PORT", 8233),
            twilio_account_sid=e.get("TWILIO_ACCOUNT_SID", ""),
            twilio_auth_token=e.get("TWILIO_AUTH_TOKEN", ""),
            twilio_api_base=e.get("TWILIO_API_BASE") or "https://api.twilio.com",
            slack_bot_token=e.get("SLACK_BOT_TOKEN", ""),
            slack_signing_secret=e.get("SLACK_SIGNING_SECRET", ""),
            slack_api_base=e.get("SLACK_API_BASE") or "https://slack.com/api/",
            webhooks_allow_private=switch("REENGAGE_WEBHOOKS_ALLOW_PRIVATE", False),
            webhooks_allow_http=switch("REENGAGE_WEBHOOKS_ALLOW_HTTP", False),
            auth_cache_seconds=seconds("REENGAGE_AUTH_CACHE_SECONDS", 5.0),
        )
