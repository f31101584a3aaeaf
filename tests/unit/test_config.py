"""Parsing settings from the environment and from .env files."""

from __future__ import annotations

from pathlib import Path

import pytest

from dartcloud.config import MAX_INPUT_BYTES, ConfigError, Settings, load_settings, read_env_file


def test_defaults_without_environment():
    settings = load_settings({}, env_file=None)

    assert settings == Settings()
    assert settings.port == 8080
    assert settings.dart_image == "dart:stable"
    assert settings.jwt_ttl == 86400
    assert settings.max_archive_bytes == 50 * 1024 * 1024
    assert settings.functions_root == Path("data") / "functions"


def test_environment_values_are_parsed():
    settings = load_settings({
        "PORT": "9000", "JWT_TTL": "60", "FUNCTION_CPUS": "1.5", "DATA_DIR": "/srv/dc",
        "MAX_ARCHIVE_FILES": "10_000", "FUNCTION_NETWORK": "bridge", "LOG_LEVEL": "debug",
    }, env_file=None)

    assert settings.port == 9000
    assert settings.jwt_ttl == 60
    assert settings.function_cpus == 1.5
    assert settings.functions_root == Path("/srv/dc/functions")
    assert settings.max_archive_files == 10000
    assert settings.function_network == "bridge"
    assert settings.log_level == "DEBUG"


@pytest.mark.parametrize("name, value", [
    ("PORT", "0"), ("PORT", "http"), ("JWT_TTL", "0"), ("FUNCTION_TIMEOUT", "inf"),
    ("FUNCTION_TIMEOUT", "nan"), ("BCRYPT_ROUNDS", "3"), ("DATABASE_URL", "sqlite:///x"),
    ("FUNCTION_NETWORK", "bad name!"), ("INSTANCE_ID", "-leading-dash"), ("LOG_LEVEL", "loud"),
])
def test_invalid_value_names_variable(name, value):
    with pytest.raises(ConfigError) as raised:
        load_settings({name: value}, env_file=None)

    assert str(raised.value).startswith(f"invalid {name}=")
    assert "expected" in str(raised.value)


def test_short_jwt_secret_is_rejected_and_hidden():
    with pytest.raises(ConfigError) as raised:
        load_settings({"JWT_SECRET": "x" * 31}, env_file=None)

    assert "at least 32 bytes" in str(raised.value)
    assert "x" * 31 not in str(raised.value)


def test_env_file_below_environment(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("# comment\n\nexport PORT=9100\nDART_IMAGE='dart:3.5'\nHOST=0.0.0.0\n")

    settings = load_settings({"HOST": "127.0.0.2"}, env_file=env_file)

    assert settings.port == 9100
    assert settings.dart_image == "dart:3.5"
    assert settings.host == "127.0.0.2"


def test_env_file_bad_line_is_reported(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("PORT=1\nthis is not a setting\n")

    with pytest.raises(ConfigError) as raised:
        read_env_file(env_file)

    assert ":2:" in str(raised.value)


def test_input_limit_matches_max_arg_strlen():
    assert MAX_INPUT_BYTES == 131_056
    assert len("FUNCTION_INPUT=") + MAX_INPUT_BYTES + 1 == 131_072
