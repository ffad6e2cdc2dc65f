"""Settings: documented defaults, ``PROXY_*`` parsing, and secret-free error lines."""

from __future__ import annotations

import os
from typing import Any

import pytest
import uvloop
from pydantic import SecretStr, ValidationError

from proxy import __main__ as main_module
from proxy import settings as settings_module
from proxy.__main__ import _loop_factory
from proxy.settings import DEFAULT_UPSTREAM_URL, Settings, describe_errors


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's ``PROXY_*`` variables out of every test."""
    for name in list(os.environ):
        if name.upper().startswith("PROXY_"):
            monkeypatch.delenv(name)


def errors_for(**env: str) -> list[str]:
    """Set ``PROXY_<NAME>`` variables, build settings, and return the described errors."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(f"PROXY_{name.upper()}", value)
        with pytest.raises(ValidationError) as info:
            Settings(_env_file=None)
    return describe_errors(info.value.errors())


def test_defaults_match_spec_table() -> None:
    settings = Settings(_env_file=None)

    assert settings.upstream_url == "https://api.1nce.com/management-api"
    assert settings.upstream_url == DEFAULT_UPSTREAM_URL
    assert settings.client_id is None
    assert settings.client_secret is None
    assert settings.redis_url is None
    assert settings.cache_ttl == 300
    assert settings.stale_ttl == 86400
    assert settings.upstream_timeout == 10
    assert settings.host == "0.0.0.0"  # noqa: S104 - the documented default
    assert settings.port == 8080
    assert settings.log_level == "info"
    assert settings.log_format == "json"
    assert settings.access_log == "errors"
    assert settings.api_keys == ()
    assert settings.admin_token is None


def test_env_values_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROXY_CACHE_TTL", "12.5")
    monkeypatch.setenv("PROXY_STALE_TTL", "0")
    monkeypatch.setenv("PROXY_UPSTREAM_TIMEOUT", "3")
    monkeypatch.setenv("PROXY_PORT", "9090")
    monkeypatch.setenv("PROXY_HOST", "127.0.0.1")
    monkeypatch.setenv("PROXY_CLIENT_ID", "my-id")
    monkeypatch.setenv("PROXY_CLIENT_SECRET", "my-secret")
    monkeypatch.setenv("PROXY_ADMIN_TOKEN", "admin-tok")

    settings = Settings(_env_file=None)

    assert settings.cache_ttl == 12.5
    assert settings.stale_ttl == 0
    assert settings.upstream_timeout == 3
    assert settings.port == 9090
    assert settings.host == "127.0.0.1"
    assert settings.client_id == "my-id"
    assert settings.client_secret is not None
    assert settings.client_secret.get_secret_value() == "my-secret"
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "admin-tok"


def test_api_keys_comma_list_is_trimmed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROXY_API_KEYS", " key-one,key-two ,  key-three")

    settings = Settings(_env_file=None)

    assert [key.get_secret_value() for key in settings.api_keys] == [
        "key-one",
        "key-two",
        "key-three",
    ]
    assert all(isinstance(key, SecretStr) for key in settings.api_keys)


def test_empty_api_keys_is_open(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROXY_API_KEYS", "")
    assert Settings(_env_file=None).api_keys == ()


@pytest.mark.parametrize(
    ("value", "entry"),
    [
        (" ", "entry 1 of 1"),
        (" , ", "entry 1 of 2"),
        (" , ,", "entry 1 of 3"),
        ("s3cr3t-one,,s3cr3t-two", "entry 2 of 3"),
        ("s3cr3t-one, ", "entry 2 of 2"),
        ("s3cr3t-one,", "entry 2 of 2"),
        (",s3cr3t-one", "entry 1 of 2"),
        ("s3cr3t-one,\u00a0", "entry 2 of 2"),
    ],
)
def test_api_keys_blank_or_with_a_blank_entry_is_an_error(value: str, entry: str) -> None:
    # A slip here used to leave the API open (" , ") or quietly drop a key.
    (line,) = errors_for(api_keys=value)
    assert line.startswith("PROXY_API_KEYS: "), line
    assert f"{entry} is blank" in line
    assert "s3cr3t" not in line
    assert "got" not in line


def test_api_keys_given_as_secrets_refuse_a_blank_one() -> None:
    with pytest.raises(ValidationError) as info:
        Settings(_env_file=None, api_keys=(SecretStr("key"), SecretStr(" ")))
    assert describe_errors(info.value.errors()) == [
        (
            "PROXY_API_KEYS: Value error, entry 2 of 2 is blank (a stray comma or space?); "
            "leave the whole value empty for none"
        )
    ]


@pytest.mark.parametrize(
    "name",
    [
        "client_id",
        "client_secret",
        "redis_url",
        "redis_password",
        "redis_sentinel_password",
        "admin_token",
    ],
)
def test_empty_means_unset(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(f"PROXY_{name.upper()}", "")
    assert getattr(Settings(_env_file=None), name) is None


@pytest.mark.parametrize(
    "name",
    [
        "client_id",
        "client_secret",
        "redis_url",
        "redis_password",
        "redis_sentinel_password",
        "admin_token",
    ],
)
@pytest.mark.parametrize("value", [" ", "  \t ", "\n", "\u00a0"])
def test_blank_is_an_error(name: str, value: str) -> None:
    (line,) = errors_for(**{name: value})
    assert line.startswith(f"PROXY_{name.upper()}: "), line
    assert "is blank" in line


def test_empty_admin_token_turns_admin_off(monkeypatch: pytest.MonkeyPatch) -> None:
    # It used to turn admin on with an empty token, which "Bearer \u00a0" then matched.
    monkeypatch.setenv("PROXY_ADMIN_TOKEN", "")
    assert Settings(_env_file=None).admin_token is None
    assert Settings(_env_file=None, admin_token=SecretStr("")).admin_token is None


def test_admin_token_is_trimmed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROXY_ADMIN_TOKEN", " adm1n-value\n")
    token = Settings(_env_file=None).admin_token
    assert token is not None
    assert token.get_secret_value() == "adm1n-value"


def test_client_secret_is_kept_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    # The upstream decides what its secret is; only a blank one is refused.
    monkeypatch.setenv("PROXY_CLIENT_SECRET", " s3cr3t ")
    secret = Settings(_env_file=None).client_secret
    assert secret is not None
    assert secret.get_secret_value() == " s3cr3t "


def test_blank_secrets_are_never_echoed() -> None:
    blanks = {"client_secret": " \t ", "admin_token": "\u00a0", "redis_password": "   "}
    lines = errors_for(**blanks)
    assert sorted(line.split(":", 1)[0] for line in lines) == [
        "PROXY_ADMIN_TOKEN",
        "PROXY_CLIENT_SECRET",
        "PROXY_REDIS_PASSWORD",
    ]
    assert all("got" not in line for line in lines), lines


# Each duration: a value at its bound (accepted) and just past it (refused).
DURATION_BOUNDS = [
    ("cache_ttl", 7 * 86400),
    ("stale_ttl", 30 * 86400),
    ("upstream_timeout", 300),
    ("retry_after_max", 3600),
    ("redis_timeout", 10),
    ("lock_timeout", 600),
    ("admin_refresh_interval", 3600),
    ("shutdown_grace", 300),
    ("shutdown_delay", 300),
]
DURATIONS = [name for name, _ in DURATION_BOUNDS] + ["token_refresh_margin"]


@pytest.mark.parametrize("name", DURATIONS)
@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "Infinity", "1e309", "1e300"])
def test_durations_are_finite_and_bounded(name: str, value: str) -> None:
    # PROXY_CACHE_TTL=inf was accepted and then every catalog request was a 500.
    (line,) = errors_for(**{name: value})
    assert line.startswith(f"PROXY_{name.upper()}: "), line
    assert f"(got {value!r})" in line


@pytest.mark.parametrize(("name", "bound"), DURATION_BOUNDS)
def test_durations_accept_their_bound_and_refuse_past_it(name: str, bound: float) -> None:
    # The lock must outlast the fetch, also when the fetch is at its bound.
    lock: dict[str, Any] = {"lock_timeout": 600} if name == "upstream_timeout" else {}
    settings = Settings(_env_file=None, **{name: str(bound), **lock})
    assert getattr(settings, name) == bound
    (line,) = errors_for(**{name: str(bound + 0.5)})
    assert line.startswith(f"PROXY_{name.upper()}: "), line
    assert f"less than or equal to {bound}" in line


def test_token_margin_must_stay_under_an_hour() -> None:
    assert Settings(_env_file=None, token_refresh_margin=3599.5).token_refresh_margin == 3599.5
    (line,) = errors_for(token_refresh_margin="3600")  # noqa: S106 - seconds, not a secret
    assert line.startswith("PROXY_TOKEN_REFRESH_MARGIN: ")
    assert "less than 3600" in line


def test_log_settings_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROXY_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("PROXY_LOG_FORMAT", "Console")
    monkeypatch.setenv("PROXY_ACCESS_LOG", "ALL")

    settings = Settings(_env_file=None)

    assert settings.log_level == "warning"
    assert settings.log_format == "console"
    assert settings.access_log == "all"


@pytest.mark.parametrize(
    "url",
    [
        "redis://localhost:6379/0",
        "rediss://user:pw@redis.example:6380/1",
        "unix:///var/run/redis.sock",
    ],
)
def test_redis_url_schemes_accepted(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("PROXY_REDIS_URL", url)
    settings = Settings(_env_file=None)
    assert settings.redis_url is not None
    assert settings.redis_url.get_secret_value() == url


def test_empty_redis_url_means_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROXY_REDIS_URL", "")
    assert Settings(_env_file=None).redis_url is None


def test_http_redis_url_rejected_without_echoing_password() -> None:
    lines = errors_for(redis_url="http://user:hunter2@redis.example:6379")

    assert len(lines) == 1
    assert lines[0].startswith("PROXY_REDIS_URL: ")
    assert "redis://" in lines[0]  # says what is expected
    assert "hunter2" not in lines[0]
    assert "redis.example" not in lines[0]


def test_invalid_values_give_one_line_per_setting() -> None:
    lines = errors_for(
        cache_ttl="soon",
        port="99999",
        log_level="loud",
        upstream_timeout="0",
    )

    assert len(lines) == 4
    by_name = {line.split(":", 1)[0]: line for line in lines}
    assert set(by_name) == {
        "PROXY_CACHE_TTL",
        "PROXY_PORT",
        "PROXY_LOG_LEVEL",
        "PROXY_UPSTREAM_TIMEOUT",
    }
    # Non-secret values are echoed to help the operator.
    assert "'soon'" in by_name["PROXY_CACHE_TTL"]
    assert "'99999'" in by_name["PROXY_PORT"]
    assert "'loud'" in by_name["PROXY_LOG_LEVEL"]


def test_secret_values_never_appear_in_errors() -> None:
    with pytest.raises(ValidationError) as info:
        Settings(
            _env_file=None,
            client_secret=["s3cr3t-value"],
            admin_token={"tok": "adm1n-value"},
            api_keys=[12345678],
            redis_url="ftp://user:pa55word@host",
        )
    lines = describe_errors(info.value.errors())

    names = sorted(line.split(":", 1)[0] for line in lines)
    assert names == [
        "PROXY_ADMIN_TOKEN",
        "PROXY_API_KEYS",
        "PROXY_CLIENT_SECRET",
        "PROXY_REDIS_URL",
    ]
    text = "\n".join(lines)
    for secret in ("s3cr3t-value", "adm1n-value", "12345678", "pa55word", "got "):
        assert secret not in text


def test_missing_credentials_names_both() -> None:
    missing = Settings(_env_file=None).missing_credentials()

    assert len(missing) == 2
    assert missing[0].startswith("PROXY_CLIENT_ID:")
    assert missing[1].startswith("PROXY_CLIENT_SECRET:")


def test_missing_credentials_treats_empty_as_missing() -> None:
    settings = Settings(_env_file=None, client_id="", client_secret=SecretStr(""))
    assert [line.split(":", 1)[0] for line in settings.missing_credentials()] == [
        "PROXY_CLIENT_ID",
        "PROXY_CLIENT_SECRET",
    ]


def test_missing_credentials_empty_when_set() -> None:
    settings = Settings(_env_file=None, client_id="id", client_secret=SecretStr("secret"))
    assert settings.missing_credentials() == []


def test_missing_secret_only() -> None:
    settings = Settings(_env_file=None, client_id="id")
    missing = settings.missing_credentials()
    assert len(missing) == 1
    assert missing[0].startswith("PROXY_CLIENT_SECRET:")


def test_account_hash_scopes_by_client_and_upstream() -> None:
    base = Settings(_env_file=None, client_id="a", upstream_url="https://one.example/api")
    same = Settings(_env_file=None, client_id="a", upstream_url="https://one.example/api")
    other_client = Settings(_env_file=None, client_id="b", upstream_url="https://one.example/api")
    other_url = Settings(_env_file=None, client_id="a", upstream_url="https://two.example/api")

    assert base.account_hash == same.account_hash
    assert len(base.account_hash) == 16
    assert int(base.account_hash, 16) >= 0  # hex digits
    assert base.account_hash != other_client.account_hash
    assert base.account_hash != other_url.account_hash
    assert other_client.account_hash != other_url.account_hash


def test_account_hash_ignores_secret() -> None:
    first = Settings(_env_file=None, client_id="a", client_secret=SecretStr("x"))
    second = Settings(_env_file=None, client_id="a", client_secret=SecretStr("y"))
    assert first.account_hash == second.account_hash


def test_upstream_url_trailing_slash_stripped() -> None:
    settings = Settings(_env_file=None, upstream_url="https://api.example/management-api/")
    assert settings.upstream_url == "https://api.example/management-api"
    same = Settings(_env_file=None, upstream_url="https://api.example/management-api")
    assert settings.account_hash == same.account_hash


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://api.example/management-api?x=1", "query"),
        ("https://api.example/management-api#top", "fragment"),
        ("ftp://api.example/", "http"),
        ("https:///no-host", "host"),
        ("not a url", "http"),
    ],
)
def test_bad_upstream_url_rejected(url: str, reason: str) -> None:
    lines = errors_for(upstream_url=url)
    assert len(lines) == 1
    assert lines[0].startswith("PROXY_UPSTREAM_URL: ")
    assert reason in lines[0]


def test_settings_are_frozen() -> None:
    settings = Settings(_env_file=None)
    with pytest.raises(ValidationError):
        settings.cache_ttl = 1  # type: ignore[misc]


def test_sentinel_settings_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROXY_REDIS_SENTINELS", "10.0.0.1:26379, sentinel-b:26380 ")
    monkeypatch.setenv("PROXY_REDIS_SENTINEL_MASTER", "cache")
    settings = Settings(_env_file=None)
    assert settings.redis_sentinels == ("10.0.0.1:26379", "sentinel-b:26380")
    assert settings.redis_sentinel_master == "cache"


def test_sentinel_address_without_port_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROXY_REDIS_SENTINELS", "sentinel-a")
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None)
    assert describe_errors(caught.value.errors())[0].startswith("PROXY_REDIS_SENTINELS:")


@pytest.mark.parametrize(
    ("value", "entry"),
    [(" ", "entry 1 of 1"), ("a:26379,,b:26379", "entry 2 of 3"), ("a:26379,", "entry 2 of 2")],
)
def test_sentinels_blank_or_with_a_blank_entry_is_an_error(value: str, entry: str) -> None:
    # A blank list used to mean "no Sentinels": the service quietly ran without Redis.
    (line,) = errors_for(redis_sentinels=value)
    assert line.startswith("PROXY_REDIS_SENTINELS: "), line
    assert f"{entry} is blank" in line


def test_empty_sentinels_means_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROXY_REDIS_SENTINELS", "")
    assert Settings(_env_file=None).redis_sentinels == ()


def test_redis_url_and_sentinels_exclude_each_other(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROXY_REDIS_SENTINELS", "a:26379")
    monkeypatch.setenv("PROXY_REDIS_URL", "redis://:pw@redis:6379")
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None)
    lines = describe_errors(caught.value.errors())
    assert len(lines) == 1
    assert "PROXY_REDIS_URL and PROXY_REDIS_SENTINELS" in lines[0]
    assert "pw" not in lines[0]


def test_lock_timeout_must_exceed_upstream_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROXY_LOCK_TIMEOUT", "5")
    monkeypatch.setenv("PROXY_UPSTREAM_TIMEOUT", "5")
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None)
    assert describe_errors(caught.value.errors()) == [
        "PROXY_LOCK_TIMEOUT must be longer than PROXY_UPSTREAM_TIMEOUT"
    ]


def test_event_loop_defaults_to_auto_and_is_case_insensitive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings(_env_file=None).event_loop == "auto"
    monkeypatch.setenv("PROXY_EVENT_LOOP", "AsyncIO")
    assert Settings(_env_file=None).event_loop == "asyncio"


def test_unknown_event_loop_is_rejected() -> None:
    (line,) = errors_for(event_loop="tokio")
    assert line.startswith("PROXY_EVENT_LOOP"), line


def test_uvloop_asked_for_where_it_is_missing_is_a_setting_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(settings_module, "uvloop_available", lambda: False)
    (line,) = errors_for(event_loop="uvloop")
    assert "PROXY_EVENT_LOOP" in line
    assert "uvloop is not installed" in line


def test_the_event_loop_setting_picks_the_loop_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _loop_factory("auto") is uvloop.new_event_loop
    assert _loop_factory("uvloop") is uvloop.new_event_loop
    assert _loop_factory("asyncio") is None
    monkeypatch.setattr(main_module, "uvloop_available", lambda: False)
    assert _loop_factory("auto") is None  # falls back to asyncio's own loop


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("billing:k1,billing:", "entry 2 (billing) has an empty key"),
        ("anonymous:k1", "'anonymous' is reserved"),
        ("a:k1,b:k1", "the same key is listed twice"),
    ],
)
def test_named_api_key_errors_name_the_entry_never_the_key(value: str, message: str) -> None:
    (line,) = errors_for(api_keys=value)
    assert line.startswith("PROXY_API_KEYS: ")
    assert message in line
    assert "k1" not in line


def test_named_api_keys_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROXY_API_KEYS", "billing:k1, portal:k2 ,bare")
    settings = Settings(_env_file=None)
    assert [key.get_secret_value() for key in settings.api_keys] == [
        "billing:k1",
        "portal:k2",
        "bare",
    ]


def test_a_missing_key_file_stops_the_start() -> None:
    (line,) = errors_for(api_keys_file="/nonexistent/api-keys")
    assert line.startswith("PROXY_API_KEYS_FILE: Value error, is not a readable file")


def test_the_management_port_must_differ_and_empty_is_unset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (line,) = errors_for(port="9000", management_port="9000")
    assert line == "PROXY_MANAGEMENT_PORT must differ from PROXY_PORT"
    monkeypatch.setenv("PROXY_MANAGEMENT_PORT", "")
    assert Settings(_env_file=None).management_port is None
    monkeypatch.setenv("PROXY_MANAGEMENT_PORT", "9090")
    assert Settings(_env_file=None).management_port == 9090
