"""Settings read from the environment and an optional `.env` file.

Every setting has a default except the database URL and the token secret,
which fall back to an embedded PostgreSQL and a generated secret. A value that
does not parse stops the start with a `ConfigError` naming the variable and the
accepted form.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

MIB = 1024 * 1024

# Linux caps one environment string ("NAME=value" plus its NUL) at
# MAX_ARG_STRLEN, 32 pages of 4 KiB (include/uapi/linux/binfmts.h).
MAX_ARG_STRLEN = 131_072
MAX_INPUT_BYTES = MAX_ARG_STRLEN - len("FUNCTION_INPUT=") - 1


class ConfigError(Exception):
    """A setting is missing or has a value of the wrong form."""


@dataclasses.dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    database_url: str | None = None
    data_dir: Path = Path("data")
    functions_dir: Path | None = None
    jwt_secret: str | None = None
    jwt_ttl: int = 24 * 3600
    bcrypt_rounds: int = 12
    dart_image: str = "dart:stable"
    instance_id: str = "dartcloud"
    log_level: str = "INFO"

    max_archive_bytes: int = 50 * MIB
    max_unpacked_bytes: int = 200 * MIB
    max_archive_files: int = 10_000
    build_timeout: float = 600.0
    max_concurrent_builds: int = 2

    function_timeout: float = 30.0
    function_memory_mb: int = 128
    function_cpus: float = 0.5
    function_pids: int = 64
    function_tmpfs_mb: int = 16
    function_nofile: int = 1024
    function_network: str = "none"
    function_output_bytes: int = 1 * MIB
    function_log_lines: int = 200
    max_concurrent_invocations: int = 32
    max_concurrent_per_function: int = 16

    @property
    def functions_root(self) -> Path:
        return self.functions_dir or self.data_dir / "functions"


def _positive_int(text: str) -> int:
    value = int(text.replace("_", ""))
    if value <= 0:
        raise ValueError(text)
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise ValueError(text)
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise ValueError(text)
    return value


def _database_url(text: str) -> str:
    if not re.match(r"^postgres(ql)?://", text):
        raise ValueError(text)
    return text


def _jwt_secret(text: str) -> str:
    if len(text.encode()) < 32:
        raise ValueError("too short")
    return text


def _bcrypt_rounds(text: str) -> int:
    value = int(text)
    if not 4 <= value <= 31:
        raise ValueError(text)
    return value


def _log_level(text: str) -> str:
    level = text.upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError(text)
    return level


def _instance_id(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", text):
        raise ValueError(text)
    return text


def _network(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", text):
        raise ValueError(text)
    return text


def _non_empty(text: str) -> str:
    if not text.strip():
        raise ValueError(text)
    return text.strip()


# Variable name -> (field, parser, accepted form shown in the error message).
_VARIABLES: dict[str, tuple[str, Callable[[str], object], str]] = {
    "HOST": ("host", _non_empty, "a host name or IP address to listen on"),
    "PORT": ("port", _port, "an integer from 1 to 65535"),
    "DATABASE_URL": ("database_url", _database_url, "a URL starting with postgresql://"),
    "DATA_DIR": ("data_dir", Path, "a folder path"),
    "FUNCTIONS_DIR": ("functions_dir", Path, "a folder path"),
    "JWT_SECRET": ("jwt_secret", _jwt_secret, "a secret of at least 32 bytes"),
    "JWT_TTL": ("jwt_ttl", _positive_int, "a positive number of seconds"),
    "BCRYPT_ROUNDS": ("bcrypt_rounds", _bcrypt_rounds, "an integer from 4 to 31"),
    "DART_IMAGE": ("dart_image", _non_empty, "a local Docker image reference such as dart:stable"),
    "INSTANCE_ID": ("instance_id", _instance_id, "letters, digits, '_', '.' or '-' (at most 63)"),
    "LOG_LEVEL": ("log_level", _log_level, "one of DEBUG, INFO, WARNING, ERROR"),
    "MAX_ARCHIVE_BYTES": ("max_archive_bytes", _positive_int, "a positive number of bytes"),
    "MAX_UNPACKED_BYTES": ("max_unpacked_bytes", _positive_int, "a positive number of bytes"),
    "MAX_ARCHIVE_FILES": ("max_archive_files", _positive_int, "a positive integer"),
    "BUILD_TIMEOUT": ("build_timeout", _positive_float, "a positive number of seconds"),
    "MAX_CONCURRENT_BUILDS": ("max_concurrent_builds", _positive_int, "a positive integer"),
    "FUNCTION_TIMEOUT": ("function_timeout", _positive_float, "a positive number of seconds"),
    "FUNCTION_MEMORY_MB": ("function_memory_mb", _positive_int, "a positive number of MiB"),
    "FUNCTION_CPUS": ("function_cpus", _positive_float, "a positive number of CPUs, such as 0.5"),
    "FUNCTION_PIDS": ("function_pids", _positive_int, "a positive integer"),
    "FUNCTION_TMPFS_MB": ("function_tmpfs_mb", _positive_int, "a positive number of MiB"),
    "FUNCTION_NOFILE": ("function_nofile", _positive_int, "a positive integer"),
    "FUNCTION_NETWORK": ("function_network", _network, "none, or the name of a Docker network"),
    "FUNCTION_OUTPUT_BYTES": ("function_output_bytes", _positive_int, "a positive number of bytes"),
    "FUNCTION_LOG_LINES": ("function_log_lines", _positive_int, "a positive integer"),
    "MAX_CONCURRENT_INVOCATIONS": (
        "max_concurrent_invocations", _positive_int, "a positive integer"),
    "MAX_CONCURRENT_PER_FUNCTION": (
        "max_concurrent_per_function", _positive_int, "a positive integer"),
}


def read_env_file(path: Path) -> dict[str, str]:
    """Read `KEY=value` lines; blank lines, `#` comments and `export ` prefixes are allowed."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue

        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        name, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name.strip()):
            raise ConfigError(f"{path}:{number}: expected KEY=value, got {raw!r}")

        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name.strip()] = value
    return values


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")
) -> Settings:
    """Build `Settings` from `environ` (default: `os.environ`) over an optional `.env` file.

    Variables set in the environment win over the file. Empty values count as unset.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        values.update(read_env_file(env_file))
    values.update({name: environ[name] for name in _VARIABLES if name in environ})

    fields: dict[str, object] = {}
    for name, (field, parse, form) in _VARIABLES.items():
        text = values.get(name, "")
        if text == "":
            continue
        try:
            fields[field] = parse(text)
        except ValueError:
            printable = "(hidden)" if name == "JWT_SECRET" else repr(text)
            raise ConfigError(f"invalid {name}={printable}: expected {form}") from None
    return Settings(**fields)
