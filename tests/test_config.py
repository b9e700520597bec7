"""Config: precedence (arguments > environment > defaults), parsing, immutability and secrecy."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from tinker_actors.config import DEFAULT_BASE_URL, Config, MissingApiKeyError, RetryPolicy
from tinker_actors.errors import ErrorCategory, TinkerError

KEY = "tml-env-secret-key-000"


def test_defaults() -> None:
    config = Config.from_env({})
    assert config.api_key is None
    assert config.base_url == DEFAULT_BASE_URL
    assert config.tags == ()
    assert config.telemetry_enabled is True
    assert config.log_level == "warning"
    assert (config.timeouts.default, config.timeouts.connect) == (60.0, 5.0)
    assert (config.timeouts.retrieve_future, config.timeouts.heartbeat, config.timeouts.telemetry) == (45, 10, 5)
    assert (config.retry.max_retries, config.retry.base_delay, config.retry.max_delay) == (10, 0.5, 10.0)
    assert config.retry.jitter == 0.25
    assert (config.heartbeat_interval, config.heartbeat_warning_after) == (10.0, 120.0)
    assert config.no_progress_timeout == 120.0


def test_environment_is_read() -> None:
    env = {
        "TINKER_API_KEY": KEY,
        "TINKER_BASE_URL": "http://127.0.0.1:8000/prefix/",
        "TINKER_TAGS": "b, a,b,,c",
        "TINKER_TELEMETRY": "0",
        "TINKER_LOG": "DEBUG",
        "CLOUDFLARE_ACCESS_CLIENT_ID": "cf-id",
        "CLOUDFLARE_ACCESS_CLIENT_SECRET": "cf-secret",
    }
    config = Config.from_env(env)
    assert config.require_api_key() == KEY
    assert config.base_url == "http://127.0.0.1:8000/prefix"
    assert config.tags == ("b", "a", "c")
    assert config.telemetry_enabled is False
    assert config.log_level == "debug"
    assert config.cf_access_client_id == "cf-id"
    assert config.cf_access_client_secret == SecretStr("cf-secret")
    assert set(config.secret_values()) == {KEY, "cf-secret"}


def test_arguments_beat_environment_and_none_means_not_given() -> None:
    env = {"TINKER_API_KEY": KEY, "TINKER_BASE_URL": "http://env:1", "TINKER_TELEMETRY": "1"}
    config = Config.from_env(env, api_key="tml-arg", base_url="http://arg:2", telemetry_enabled=False,
                             tags=["x"])
    assert config.require_api_key() == "tml-arg"
    assert config.base_url == "http://arg:2"
    assert config.telemetry_enabled is False
    assert config.tags == ("x",)

    fallback = Config.from_env(env, api_key=None, base_url=None)
    assert fallback.require_api_key() == KEY
    assert fallback.base_url == "http://env:1"


@pytest.mark.parametrize(("value", "enabled"), [
    ("1", True), ("true", True), ("YES", True), ("on", True), ("0", False), ("false", False), ("", False),
    ("nope", False),
])
def test_telemetry_switch(value: str, enabled: bool) -> None:
    assert Config.from_env({"TINKER_TELEMETRY": value}).telemetry_enabled is enabled


def test_unknown_log_level_in_env_is_ignored() -> None:
    assert Config.from_env({"TINKER_LOG": "verbose"}).log_level == "warning"
    assert Config.from_env({"TINKER_LOG": "info"}).log_level == "info"


def test_api_key_is_secret_in_repr_str_and_dumps() -> None:
    config = Config.from_env({"TINKER_API_KEY": KEY, "CLOUDFLARE_ACCESS_CLIENT_SECRET": "cf-secret"})
    for text in (repr(config), str(config), config.model_dump_json(), repr(config.model_dump())):
        assert KEY not in text
        assert "cf-secret" not in text
    assert "api_key=SecretStr('**********')" in repr(config)


def test_config_is_frozen_and_replace_validates() -> None:
    config = Config(api_key="tml-a")
    with pytest.raises(ValidationError):
        config.base_url = "http://other"  # type: ignore[misc]

    changed = config.replace(base_url="http://127.0.0.1:9/", retry=RetryPolicy(max_retries=0))
    assert changed.base_url == "http://127.0.0.1:9"
    assert changed.retry.max_retries == 0
    assert changed.api_key == config.api_key
    assert config.base_url == DEFAULT_BASE_URL  # the original is untouched
    assert config.replace(api_key=None).api_key is None  # None is a real value for replace
    with pytest.raises(ValidationError):
        config.replace(base_url="ftp://nope")
    with pytest.raises(ValidationError):
        config.replace(no_such_field=1)


def test_configs_are_hashable_and_comparable() -> None:
    assert Config(api_key="tml-a", tags=["x"]) == Config(api_key="tml-a", tags=("x",))
    assert hash(Config(api_key="tml-a")) == hash(Config(api_key="tml-a"))


def test_missing_api_key_is_a_typed_user_error_that_says_how_to_fix_it() -> None:
    for config in (Config(), Config(api_key="")):
        with pytest.raises(MissingApiKeyError) as caught:
            config.require_api_key()
        assert isinstance(caught.value, TinkerError)
        assert caught.value.category is ErrorCategory.USER
        assert "TINKER_API_KEY" in str(caught.value) and "api_key=" in str(caught.value)


def test_default_headers_accept_a_mapping() -> None:
    config = Config(default_headers={"X-A": "1"})
    assert config.default_headers == (("X-A", "1"),)


def test_invalid_values_are_rejected() -> None:
    with pytest.raises(ValidationError):
        RetryPolicy(max_retries=-1)
    with pytest.raises(ValidationError):
        RetryPolicy(jitter=1.5)
    with pytest.raises(ValidationError):
        Config(no_progress_timeout=0)


def test_from_env_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINKER_API_KEY", KEY)
    monkeypatch.setenv("TINKER_BASE_URL", "http://127.0.0.1:8123")
    monkeypatch.delenv("TINKER_TAGS", raising=False)
    config = Config.from_env()
    assert config.require_api_key() == KEY
    assert config.base_url == "http://127.0.0.1:8123"
    assert Config.from_env(api_key="tml-explicit").require_api_key() == "tml-explicit"


# ---- secrets read from files: surrounding whitespace stripped, characters a header cannot carry rejected ----

def test_whitespace_around_a_key_is_stripped_wherever_the_key_comes_from() -> None:
    assert Config(api_key=KEY + "\n").require_api_key() == KEY  # open(path).read()
    assert Config(api_key=SecretStr(f" {KEY}\r\n")).require_api_key() == KEY
    assert Config.from_env({"TINKER_API_KEY": f"\t{KEY}\n"}).require_api_key() == KEY
    assert Config(api_key="tml-other").replace(api_key=KEY + "\n").require_api_key() == KEY
    assert Config.model_validate({"api_key": KEY + "\n"}).require_api_key() == KEY
    assert Config(cf_access_client_secret="cf-secret\n").secret_values() == ("cf-secret",)
    with pytest.raises(MissingApiKeyError):
        Config(api_key=" \n").require_api_key()


@pytest.mark.parametrize("bad", [KEY[:8] + "\n" + KEY[8:], KEY + "\x00", KEY[:4] + "\u200b" + KEY[4:],
                                 KEY + "\u00e9", KEY[:5] + "\t" + KEY[5:]])
def test_a_key_with_a_control_or_non_ascii_character_inside_is_a_typed_error_that_never_shows_it(bad: str) -> None:
    import pickle
    import traceback

    from tinker_actors.config import InvalidSecretError
    from tinker_actors.errors import InvalidInputError

    builders = (lambda: Config(api_key=bad), lambda: Config.from_env({"TINKER_API_KEY": bad}),
                lambda: Config(api_key="tml-ok").replace(api_key=bad), lambda: Config(api_key=SecretStr(bad)))
    for build in builders:
        with pytest.raises(InvalidSecretError) as caught:
            build()
        error = caught.value
        assert isinstance(error, InvalidInputError) and error.category is ErrorCategory.USER
        assert "API key" in str(error) and "TINKER_API_KEY" in str(error)
        assert error.__cause__ is None and error.__context__ is None
        shown = (str(error), repr(error), "".join(traceback.format_exception(error)), repr(error.args))
        for text in shown:
            assert bad.strip() not in text and KEY not in text
        pickled = pickle.dumps(error)
        assert KEY.encode() not in pickled
        assert str(pickle.loads(pickled)) == str(error)


def test_the_cloudflare_secret_is_checked_the_same_way() -> None:
    from tinker_actors.config import InvalidSecretError

    with pytest.raises(InvalidSecretError, match="CLOUDFLARE_ACCESS_CLIENT_SECRET") as caught:
        Config.from_env({"CLOUDFLARE_ACCESS_CLIENT_SECRET": "cf-\nsecret"})
    assert "cf-" not in str(caught.value).replace("cf_access", "")


def test_validation_errors_of_a_config_do_not_quote_their_input() -> None:
    with pytest.raises(ValidationError) as caught:
        Config(api_key=["tml-not-a-string-secret"])  # type: ignore[arg-type]
    assert "tml-not-a-string-secret" not in str(caught.value)


def test_default_query_accepts_a_mapping_like_the_official_sdk() -> None:
    config = Config(default_query={"a": 1, "flag": True, "many": ["x", "y"], "gone": None})
    assert config.default_query == (("a", "1"), ("flag", "true"), ("many", "x"), ("many", "y"))


def test_a_pickled_config_holds_no_secret() -> None:
    import copy
    import pickle

    config = Config(api_key="tml-pickle-secret", cf_access_client_secret="cf-pickle-secret",
                    base_url="http://127.0.0.1:9")
    pickled = pickle.dumps(config)
    assert b"pickle-secret" not in pickled
    restored = pickle.loads(pickled)
    assert restored.api_key is None and restored.cf_access_client_secret is None
    assert restored.base_url == config.base_url
    assert restored.replace(api_key="tml-other").require_api_key() == "tml-other"
    assert copy.deepcopy(config).require_api_key() == "tml-pickle-secret"  # an in-process copy keeps it


def test_a_key_that_is_neither_tml_nor_a_jwt_is_refused_without_being_quoted() -> None:
    from tinker_actors.config import InvalidApiKeyError
    from tinker_actors.errors import InvalidInputError

    for bad in ("sk-0123456789SECRET", "tml_wrong_sep_SECRET", "SECRETeyJ"):
        with pytest.raises(InvalidApiKeyError) as caught:
            Config(api_key=bad).require_api_key()
        assert "SECRET" not in str(caught.value)
        assert "tml-" in str(caught.value)
        assert isinstance(caught.value, InvalidInputError)
    assert Config(api_key="tml-abc").require_api_key() == "tml-abc"
    jwt_like = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
    assert Config(api_key=jwt_like).require_api_key() == jwt_like
