"""Settings from the environment (design §10). Secrets are kept out of repr() and logs."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from tenants.assistant.drafts import AssistantSettings

REWRITERS = ("rules", "openai")
TRANSLATORS = ("apertium", "openai")


@dataclass(frozen=True)
class Settings:
    database_url: str | None = field(default=None, repr=False)  # it may hold a password
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
    # operations (docs/operations.md): the Prometheus endpoint of every long-running process
    # (GET /metrics on its own listener: metrics_host, default the bind host; port 0: none)
    # and the bearer token it may require
    metrics_host: str = ""
    metrics_port: int = 0
    metrics_token: str = field(default="", repr=False)
    log_format: str = "text"  # text | json (one JSON object per line)
    # a Temporal cluster beyond the dev server: TLS (the server's CA, or the system's), a
    # client certificate for mTLS, or an API key (Temporal Cloud), all optional
    temporal_tls: bool = False
    temporal_tls_ca: Path | None = None
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    temporal_tls_server_name: str = ""
    temporal_api_key: str = field(default="", repr=False)
    # OpenTelemetry traces over OTLP/HTTP (the `otel` extra), only when set
    otel_endpoint: str = ""
    # the message assistant (docs/assistant.md): which provider drafts rewrites (rules |
    # openai) and translations (apertium | openai); an OpenAI-compatible chat-completions
    # endpoint (off unless chosen); the apertium command; how long a provider may take
    assistant_rewriter: str = "rules"
    assistant_translator: str = "apertium"
    openai_base_url: str = ""
    openai_model: str = ""
    openai_api_key: str = field(default="", repr=False)
    apertium_command: str = "apertium"
    assistant_timeout_seconds: float = 10.0

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

        def pem_file(name: str) -> Path | None:
            raw = e.get(name, "").strip()
            if not raw:
                return None
            path = Path(raw)
            if not path.is_file():
                raise SystemExit(f"{name}={raw!r}: no such file")
            return path

        log_format = (e.get("REENGAGE_LOG_FORMAT") or "text").strip().lower()
        if log_format not in ("text", "json"):
            raise SystemExit(f"REENGAGE_LOG_FORMAT={log_format!r}: text or json")
        tls_ca = pem_file("REENGAGE_TEMPORAL_TLS_CA")
        tls_cert = pem_file("REENGAGE_TEMPORAL_TLS_CERT")
        tls_key = pem_file("REENGAGE_TEMPORAL_TLS_KEY")
        if (tls_cert is None) != (tls_key is None):
            raise SystemExit(
                "reengage: set both REENGAGE_TEMPORAL_TLS_CERT and REENGAGE_TEMPORAL_TLS_KEY"
                " (a client certificate and its key), or neither"
            )
        api_key = e.get("REENGAGE_TEMPORAL_API_KEY", "").strip()
        # any certificate or an API key means TLS (Temporal Cloud takes API keys over TLS
        # only); REENGAGE_TEMPORAL_TLS=1 alone: TLS with the system's trusted CAs
        tls_wanted = bool(tls_ca or tls_cert or api_key)
        metrics_off = e.get("REENGAGE_METRICS_PORT", "").strip() == "0"  # 0: no /metrics
        rewriter = (e.get("REENGAGE_ASSISTANT_REWRITER") or "rules").strip().lower()
        if rewriter not in REWRITERS:
            raise SystemExit(f"REENGAGE_ASSISTANT_REWRITER={rewriter!r}: rules or openai")
        translator = (e.get("REENGAGE_ASSISTANT_TRANSLATOR") or "apertium").strip().lower()
        if translator not in TRANSLATORS:
            raise SystemExit(f"REENGAGE_ASSISTANT_TRANSLATOR={translator!r}: apertium or openai")
        openai_base_url = e.get("REENGAGE_OPENAI_BASE_URL", "").strip()
        openai_model = e.get("REENGAGE_OPENAI_MODEL", "").strip()
        if "openai" in (rewriter, translator) and not (openai_base_url and openai_model):
            raise SystemExit(
                "reengage: the openai assistant provider needs REENGAGE_OPENAI_BASE_URL and"
                " REENGAGE_OPENAI_MODEL (and REENGAGE_OPENAI_API_KEY when the endpoint asks)"
            )
        assistant_timeout = seconds("REENGAGE_ASSISTANT_TIMEOUT_SECONDS", 10.0)
        if assistant_timeout <= 0:
            raise SystemExit("REENGAGE_ASSISTANT_TIMEOUT_SECONDS must be more than 0")
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
            metrics_host=e.get("REENGAGE_METRICS_HOST", "").strip(),
            metrics_port=0 if metrics_off else port("REENGAGE_METRICS_PORT", 9464),
            metrics_token=e.get("REENGAGE_METRICS_TOKEN", "").strip(),
            log_format=log_format,
            temporal_tls=switch("REENGAGE_TEMPORAL_TLS", tls_wanted),
            temporal_tls_ca=tls_ca,
            temporal_tls_cert=tls_cert,
            temporal_tls_key=tls_key,
            temporal_tls_server_name=e.get("REENGAGE_TEMPORAL_TLS_SERVER_NAME", "").strip(),
            temporal_api_key=api_key,
            otel_endpoint=e.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip(),
            assistant_rewriter=rewriter,
            assistant_translator=translator,
            openai_base_url=openai_base_url,
            openai_model=openai_model,
            openai_api_key=e.get("REENGAGE_OPENAI_API_KEY", "").strip(),
            apertium_command=e.get("REENGAGE_APERTIUM_COMMAND", "").strip() or "apertium",
            assistant_timeout_seconds=assistant_timeout,
        )

    @property
    def assistant(self) -> AssistantSettings:
        """The message assistant's settings (tenants.assistant): its providers and their
        endpoint, command and time limit."""
        return AssistantSettings(
            rewriter=self.assistant_rewriter,
            translator=self.assistant_translator,
            openai_base_url=self.openai_base_url,
            openai_model=self.openai_model,
            openai_api_key=self.openai_api_key,
            apertium_command=self.apertium_command,
            timeout_seconds=self.assistant_timeout_seconds,
        )

    @property
    def metrics_bind_host(self) -> str:
        """Where /metrics listens: REENGAGE_METRICS_HOST, else the bind host."""
        return self.metrics_host or self.bind_host
