"""One settings class for the whole process, read from `TRANSACT_*` variables.

Backends are chosen by URL scheme so that the embedded and the distributed
deployments differ only in configuration.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from transact.kernel.errors import ConfigError

# Documented in the README as an example; never accepted outside demo mode.
DEMO_MASTER_KEY = base64.b64encode(b"transact-demo-master-key-32bytes").decode()

BUS_SCHEMES = ("memory", "redis", "rediss")
CACHE_SCHEMES = ("memory", "redis", "rediss")
DATABASE_SCHEMES = ("sqlite+aiosqlite", "postgresql+asyncpg")


def redact_url(url: str) -> str:
    """Return the URL with any password replaced, for error messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def decode_master_key(value: str, name: str = "TRANSACT_MASTER_KEY") -> bytes:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{name} is not valid base64") from None
    if len(raw) != 32:
        raise ValueError(f"{name} must decode to 32 bytes, got {len(raw)}")
    return raw


def _check_scheme(url: str, allowed: tuple[str, ...], name: str) -> str:
    scheme = urlsplit(url).scheme
    if scheme not in allowed:
        raise ValueError(
            f"{name}={redact_url(url)!r} has scheme {scheme!r}; use one of: "
            + ", ".join(f"{s}://" for s in allowed)
        )
    if scheme.startswith("redis") and not urlsplit(url).hostname:
        raise ValueError(f"{name}={redact_url(url)!r} names no host")
    return url


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRANSACT_", extra="ignore")

    demo: bool = False
    data_dir: Path = Path(".transact")
    database_url: str = ""
    bus_url: str = "memory://"
    cache_url: str = "memory://"
    vault_url: str = Field(
        default="",
        description="where the vault keeps sealed card data; empty: the cache. A Redis of "
        "its own lets a network policy keep every service but capture and psp away from it",
    )
    master_key: SecretStr | None = None
    previous_master_keys: SecretStr | None = Field(
        default=None, description="comma-separated base64 keys that still decrypt, never encrypt"
    )
    namespace: str = "transact"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: str = "INFO"
    log_json: bool = True
    bus_visibility_timeout: float = Field(default=30.0, gt=0)
    bus_max_deliveries: int = Field(default=10, ge=1)
    vault_ttl: float = Field(default=900.0, gt=0)
    outbox_poll_interval: float = Field(default=0.2, gt=0)
    # psp
    psp_reconcile_after: float = Field(
        default=30.0,
        gt=0,
        description="seconds a payment stays `submitted` before reconciliation asks the PSP; "
        "keep it above the PSP call timeout (15 s) where several PSP processes run",
    )
    psp_connect_timeout: float = Field(
        default=2.0,
        gt=0,
        description="seconds to open a connection to a PSP; a PSP that takes longer was "
        "never sent the call, so it fails over at once",
    )
    webhook_allow_private: bool = Field(
        default=False,
        description="let merchant webhooks go to private and loopback addresses (and over "
        "plain http to them): for tests and closed networks only",
    )
    # auth
    demo_password: SecretStr | None = None
    demo_media_token: SecretStr | None = None
    access_token_ttl: float = Field(default=300.0, gt=0)
    session_idle_timeout: float = Field(default=900.0, gt=0)
    session_max_age: float = Field(default=12 * 3600.0, gt=0)
    # gateway
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    rate_limit_scale: float = Field(
        default=1.0, ge=0, description="multiplies every rate limit; 0 turns them off"
    )
    public_url: str = ""
    # telephony
    media_pair_timeout: float = Field(
        default=30.0, gt=0, description="seconds a media leg waits for its partner leg"
    )
    media_start_timeout: float = Field(
        default=10.0, gt=0, description="seconds a media socket may stay open without `start`"
    )
    # voice
    voice_engine: str = Field(
        default="whisper",
        description="speech recognizer for spoken card details: `whisper` (offline, loaded "
        "on the first speech capture), `deepgram` (Deepgram's streaming API: card audio "
        "leaves this deployment) or `off` (speech capture not offered)",
    )
    deepgram_api_key: SecretStr | None = Field(
        default=None, description="the Deepgram API key, for `voice_engine=deepgram`"
    )
    deepgram_url: str = Field(
        default="wss://api.deepgram.com/v1/listen",
        description="Deepgram's live audio endpoint (wss://; ws:// to loopback only)",
    )
    deepgram_model: str = Field(
        default="nova-2-phonecall", description="the Deepgram model for spoken card details"
    )
    transcript_retention_days: float = Field(
        default=90.0,
        gt=0,
        description="days a call's redacted transcript is kept; older ones are deleted",
    )
    voice_readback: bool = Field(
        default=True,
        description="read the last four digits of a spoken card number back to the customer "
        "and ask them to confirm",
    )
    # notifications
    push_heartbeat: float = Field(
        default=20.0, gt=0, description="seconds between the push channel's ping messages"
    )
    push_resume_window: float = Field(
        default=300.0,
        gt=0,
        description="seconds pushed events are kept so a client can resume after a disconnect",
    )
    push_queue_limit: int = Field(
        default=256, ge=1, description="messages queued for one push socket before it is cut off"
    )
    push_auth_timeout: float = Field(
        default=5.0, gt=0, description="seconds a push socket may take to send its auth message"
    )

    @field_validator("bus_url")
    @classmethod
    def _bus_url(cls, v: str) -> str:
        return _check_scheme(v, BUS_SCHEMES, "TRANSACT_BUS_URL")

    @field_validator("cache_url")
    @classmethod
    def _cache_url(cls, v: str) -> str:
        return _check_scheme(v, CACHE_SCHEMES, "TRANSACT_CACHE_URL")

    @field_validator("vault_url")
    @classmethod
    def _vault_url(cls, v: str) -> str:
        return _check_scheme(v, CACHE_SCHEMES, "TRANSACT_VAULT_URL") if v else v

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, v: str) -> str:
        return _check_scheme(v, DATABASE_SCHEMES, "TRANSACT_DATABASE_URL") if v else v

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, v: str) -> str:
        level = v.upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("TRANSACT_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")
        return level

    @model_validator(mode="after")
    def _keys(self) -> Settings:
        if self.master_key is not None:
            decode_master_key(self.master_key.get_secret_value())
        for i, key in enumerate(self._previous_key_strings()):
            decode_master_key(key, f"TRANSACT_PREVIOUS_MASTER_KEYS[{i}]")
        if self.demo:
            return self
        if self.master_key is None:
            raise ValueError(
                "TRANSACT_MASTER_KEY is not set; outside demo mode the vault needs a key of "
                "your own: generate one with `transact keygen`"
            )
        # Compare the key bytes: base64 has more than one spelling of the same 32 bytes.
        current = decode_master_key(self.master_key.get_secret_value())
        if current == decode_master_key(DEMO_MASTER_KEY):
            raise ValueError(
                "TRANSACT_MASTER_KEY is the published demo key; generate your own with "
                "`transact keygen`"
            )
        return self

    def _previous_key_strings(self) -> list[str]:
        if self.previous_master_keys is None:
            return []
        raw = self.previous_master_keys.get_secret_value()
        return [k.strip() for k in raw.split(",") if k.strip()]

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'transact.db').resolve()}"

    def master_keys(self) -> list[bytes]:
        """The encrypting key first, then the keys that may only decrypt."""
        current = self.master_key.get_secret_value() if self.master_key else DEMO_MASTER_KEY
        keys = [decode_master_key(current)]
        keys += [decode_master_key(k) for k in self._previous_key_strings()]
        return keys


def load_settings(**overrides: object) -> Settings:
    """Read settings, turning validation failures into one clear ConfigError."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            message = str(err["msg"]).removeprefix("Value error, ")
            loc = ".".join(str(p) for p in err["loc"])
            if loc and not message.startswith("TRANSACT_"):
                message = f"TRANSACT_{loc.upper()}: {message}"
            problems.append(message)
        raise ConfigError("; ".join(problems)) from None
