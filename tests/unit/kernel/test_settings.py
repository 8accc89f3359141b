"""Settings from `TRANSACT_*` variables: clear errors, no secrets in them, safe key rules."""

from __future__ import annotations

import base64
import os
import string
import traceback
from pathlib import Path

import pytest

from transact.kernel.errors import ConfigError
from transact.kernel.settings import DEMO_MASTER_KEY, load_settings, redact_url

KEY_1 = bytes(range(32))
KEY_2 = bytes(range(32, 64))
KEY_3 = bytes(range(64, 96))
B64_1, B64_2, B64_3 = (base64.b64encode(k).decode() for k in (KEY_1, KEY_2, KEY_3))
PASSWORD = "s3cr3t-Passw0rd"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No TRANSACT_* variable of the machine running the tests leaks in; cwd is empty."""
    for name in list(os.environ):
        if name.upper().startswith("TRANSACT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def config_error(**overrides: object) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(**overrides)
    return str(caught.value)


# --- the master key --------------------------------------------------------------


def test_outside_demo_a_master_key_is_required() -> None:
    message = config_error()
    assert "TRANSACT_MASTER_KEY is not set" in message
    assert "transact keygen" in message


def test_an_empty_master_key_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSACT_MASTER_KEY", "")
    assert "TRANSACT_MASTER_KEY" in config_error()


def test_demo_mode_runs_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSACT_DEMO", "true")
    settings = load_settings()
    assert settings.demo is True
    assert settings.master_key is None
    assert settings.master_keys() == [base64.b64decode(DEMO_MASTER_KEY)]


def test_the_demo_key_is_refused_outside_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "published demo key" in config_error(master_key=DEMO_MASTER_KEY)
    monkeypatch.setenv("TRANSACT_MASTER_KEY", DEMO_MASTER_KEY)
    message = config_error()
    assert "TRANSACT_MASTER_KEY" in message
    assert "published demo key" in message


def test_the_demo_key_spelled_differently_is_still_refused() -> None:
    # The last base64 character before the padding carries bits the decoder ignores.
    body, padding = DEMO_MASTER_KEY.rstrip("="), "=" * DEMO_MASTER_KEY.count("=")
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "+/"
    variant = body[:-1] + alphabet[alphabet.index(body[-1]) ^ 1] + padding
    assert variant != DEMO_MASTER_KEY
    assert base64.b64decode(variant, validate=True) == base64.b64decode(DEMO_MASTER_KEY)
    assert "published demo key" in config_error(master_key=variant)


def test_the_demo_key_is_accepted_in_demo_mode() -> None:
    settings = load_settings(demo=True, master_key=DEMO_MASTER_KEY)
    assert settings.master_keys() == [base64.b64decode(DEMO_MASTER_KEY)]


def test_a_key_of_your_own_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSACT_MASTER_KEY", B64_1)
    settings = load_settings()
    assert settings.demo is False
    assert settings.master_keys() == [KEY_1]


@pytest.mark.parametrize(
    "bad",
    ["not base64!!", "QUJD=", B64_1 + "x", B64_1[:-4], "AAAA AAAA" + B64_1[9:]],
    ids=["junk", "bad-padding", "trailing", "truncated", "space-inside"],
)
def test_a_master_key_that_is_not_base64_is_refused(bad: str) -> None:
    message = config_error(master_key=bad)
    assert "TRANSACT_MASTER_KEY" in message
    assert bad not in message


@pytest.mark.parametrize("length", [16, 31, 33, 64])
def test_a_master_key_of_the_wrong_length_is_refused(length: int) -> None:
    value = base64.b64encode(bytes(length)).decode()
    message = config_error(master_key=value)
    assert "TRANSACT_MASTER_KEY must decode to 32 bytes" in message
    assert f"got {length}" in message
    assert value not in message


def test_a_bad_key_is_refused_in_demo_mode_too() -> None:
    assert "TRANSACT_MASTER_KEY" in config_error(demo=True, master_key="not base64!!")


def test_master_keys_put_the_current_key_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSACT_MASTER_KEY", B64_1)
    monkeypatch.setenv("TRANSACT_PREVIOUS_MASTER_KEYS", f" {B64_2} ,{B64_3},, ")
    assert load_settings().master_keys() == [KEY_1, KEY_2, KEY_3]


def test_master_keys_without_previous_keys() -> None:
    assert load_settings(master_key=B64_2).master_keys() == [KEY_2]


def test_a_bad_previous_key_is_named_by_position(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSACT_MASTER_KEY", B64_1)
    monkeypatch.setenv("TRANSACT_PREVIOUS_MASTER_KEYS", f"{B64_2},tooshort")
    message = config_error()
    assert "TRANSACT_PREVIOUS_MASTER_KEYS[1]" in message
    assert "tooshort" not in message


def test_keys_never_show_in_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSACT_MASTER_KEY", B64_1)
    monkeypatch.setenv("TRANSACT_PREVIOUS_MASTER_KEYS", B64_2)
    settings = load_settings()
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    assert B64_1 not in shown
    assert B64_2 not in shown


# --- backend URLs ----------------------------------------------------------------------

URL_FIELDS = [
    ("bus_url", "TRANSACT_BUS_URL"),
    ("cache_url", "TRANSACT_CACHE_URL"),
    ("database_url", "TRANSACT_DATABASE_URL"),
]


@pytest.mark.parametrize(("field", "variable"), URL_FIELDS)
@pytest.mark.parametrize(
    "url", ["kafka://broker:9092", "http://localhost:6379", "mysql://db/x", "localhost:6379"]
)
def test_an_unknown_scheme_is_refused_naming_the_variable(
    field: str, variable: str, url: str
) -> None:
    message = config_error(master_key=B64_1, **{field: url})
    assert variable in message
    assert "use one of" in message


def test_postgres_needs_the_async_driver() -> None:
    message = config_error(master_key=B64_1, database_url="postgresql://u@db/transact")
    assert "TRANSACT_DATABASE_URL" in message
    assert "postgresql+asyncpg://" in message


@pytest.mark.parametrize(("field", "variable"), URL_FIELDS[:2])
def test_a_redis_url_needs_a_host(field: str, variable: str) -> None:
    message = config_error(master_key=B64_1, **{field: "redis:///0"})
    assert variable in message
    assert "names no host" in message


@pytest.mark.parametrize(("field", "variable"), URL_FIELDS)
@pytest.mark.parametrize(
    "template",
    ["kafka://user:{pw}@broker:9092/0", "mysql://user:{pw}@db:3306/x", "redis://:{pw}@/0"],
)
def test_a_password_in_a_bad_url_never_shows(
    monkeypatch: pytest.MonkeyPatch, field: str, variable: str, template: str
) -> None:
    url = template.format(pw=PASSWORD)
    monkeypatch.setenv(variable, url)
    monkeypatch.setenv("TRANSACT_MASTER_KEY", B64_1)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert variable in message
    assert "***" in message
    assert PASSWORD not in message
    # Nor in the traceback an operator would see, chained exceptions included.
    printed = "".join(traceback.format_exception(caught.value))
    assert PASSWORD not in printed


def test_every_problem_is_reported_at_once() -> None:
    message = config_error(bus_url="kafka://b", cache_url="memcached://c", log_level="LOUD")
    for variable in (
        "TRANSACT_BUS_URL",
        "TRANSACT_CACHE_URL",
        "TRANSACT_LOG_LEVEL",
    ):
        assert variable in message


@pytest.mark.parametrize(
    ("field", "url"),
    [
        ("bus_url", "memory://"),
        ("bus_url", "redis://localhost:6379/0"),
        ("bus_url", "rediss://user:pw@redis.example:6380/1"),
        ("cache_url", "memory://"),
        ("cache_url", "redis://localhost/0"),
        ("database_url", "sqlite+aiosqlite:///tmp/x.db"),
        ("database_url", "postgresql+asyncpg://user:pw@db:5432/transact"),
    ],
)
def test_supported_urls_are_accepted(field: str, url: str) -> None:
    assert getattr(load_settings(master_key=B64_1, **{field: url}), field) == url


def test_redact_url_hides_only_the_password() -> None:
    assert redact_url(f"redis://user:{PASSWORD}@host:6379/0") == "redis://user:***@host:6379/0"
    assert redact_url("redis://host:6379/0") == "redis://host:6379/0"
    assert redact_url("memory://") == "memory://"


# --- defaults and other values ---------------------------------------------------------------


def test_defaults() -> None:
    settings = load_settings(master_key=B64_1)
    assert settings.bus_url == "memory://"
    assert settings.cache_url == "memory://"
    assert settings.database_url == ""
    assert settings.vault_ttl == 900.0
    assert settings.namespace == "transact"
    assert settings.log_level == "INFO"


def test_database_defaults_to_sqlite_under_the_data_dir(clean_environment: Path) -> None:
    settings = load_settings(master_key=B64_1)
    expected = (clean_environment / ".transact" / "transact.db").resolve()
    assert settings.effective_database_url == f"sqlite+aiosqlite:///{expected}"


def test_database_follows_the_data_dir(
    monkeypatch: pytest.MonkeyPatch, clean_environment: Path
) -> None:
    monkeypatch.setenv("TRANSACT_DATA_DIR", "state/here")
    settings = load_settings(master_key=B64_1)
    expected = (clean_environment / "state" / "here" / "transact.db").resolve()
    assert settings.effective_database_url == f"sqlite+aiosqlite:///{expected}"
    assert Path(settings.effective_database_url.removeprefix("sqlite+aiosqlite:///")).is_absolute()


def test_a_configured_database_url_wins() -> None:
    url = "postgresql+asyncpg://u:p@db/transact"
    assert load_settings(master_key=B64_1, database_url=url).effective_database_url == url


def test_values_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSACT_MASTER_KEY", B64_1)
    monkeypatch.setenv("TRANSACT_PORT", "9001")
    monkeypatch.setenv("TRANSACT_LOG_LEVEL", "debug")
    monkeypatch.setenv("TRANSACT_VAULT_TTL", "60")
    monkeypatch.setenv("TRANSACT_NAMESPACE", "acme")
    settings = load_settings()
    assert (settings.port, settings.log_level, settings.vault_ttl, settings.namespace) == (
        9001,
        "DEBUG",
        60.0,
        "acme",
    )


def test_overrides_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSACT_MASTER_KEY", B64_1)
    monkeypatch.setenv("TRANSACT_PORT", "9001")
    assert load_settings(port=9002).port == 9002


def test_unrelated_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSACT_MASTER_KEY", B64_1)
    monkeypatch.setenv("TRANSACT_SOMETHING_ELSE", "x")
    monkeypatch.setenv("MASTER_KEY", "not ours")
    assert load_settings().master_keys() == [KEY_1]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TRANSACT_PORT", "0"),
        ("TRANSACT_PORT", "70000"),
        ("TRANSACT_PORT", "http"),
        ("TRANSACT_LOG_LEVEL", "verbose"),
        ("TRANSACT_VAULT_TTL", "0"),
        ("TRANSACT_BUS_MAX_DELIVERIES", "0"),
        ("TRANSACT_DEMO", "maybe"),
    ],
)
def test_bad_values_are_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv("TRANSACT_MASTER_KEY", B64_1)
    monkeypatch.setenv(variable, value)
    assert variable in config_error()
