"""Strictly parsed configuration from environment variables (each also as VAR_FILE)."""

from __future__ import annotations

import ipaddress
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class ConfigError(Exception):
    """A configuration variable has a value we refuse to start with."""


def _raw(env: Mapping[str, str], name: str) -> str | None:
    """Return VAR, or the contents of the file named by VAR_FILE; both set is an error."""
    value = env.get(name)
    file_name = env.get(f"{name}_FILE")
    if value is not None and file_name is not None:
        raise ConfigError(f"{name}: set either {name} or {name}_FILE, not both")
    if file_name is not None:
        try:
            return Path(file_name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE: cannot read {file_name}: {exc.strerror}") from None
    return value


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = _raw(env, name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip(), 10)
    except ValueError:
        raise ConfigError(f"{name}: expected a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}: must be between {low} and {high}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _raw(env, name)
    if raw is None or raw.strip() == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}: expected true/false, got {raw!r}")


def _bind(env: Mapping[str, str]) -> str:
    raw = (_raw(env, "PORTAL_BIND") or "0.0.0.0:5000").strip()  # noqa: S104 - served on the VM's network by design
    host, sep, port = raw.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"PORTAL_BIND: expected HOST:PORT, got {raw!r}")
    return raw


def _external_url(env: Mapping[str, str]) -> str | None:
    raw = (_raw(env, "PORTAL_EXTERNAL_URL") or "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (
        parts.scheme != "https"
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username
        or port == -1
    ):
        raise ConfigError(
            "PORTAL_EXTERNAL_URL: expected https://HOST or https://HOST:PORT (the address "
            f"browsers use), got {raw!r}"
        )
    return f"https://{parts.netloc.lower()}"


MAX_PROXY_NETWORK = 256


def _cidrs(
    env: Mapping[str, str], name: str
) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """A comma-separated list of addresses or networks; ConfigError names the bad one."""
    raw = _raw(env, name) or ""
    networks = []
    for part in raw.replace(" ", ",").split(","):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ConfigError(f"{name}: {part!r} is not an IP address or network") from None
    return networks


def _networks(env: Mapping[str, str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    networks = _cidrs(env, "PORTAL_TRUSTED_PROXIES")
    for network in networks:
        part = str(network)
        if network.num_addresses > MAX_PROXY_NETWORK:
            # Gunicorn matches X-Forwarded-Proto senders by exact address, one by one.
            raise ConfigError(
                f"PORTAL_TRUSTED_PROXIES: {part!r} is too large; list the proxies' addresses "
                f"or networks of at most {MAX_PROXY_NETWORK} addresses"
            )
    return tuple(networks)


def _path(env: Mapping[str, str], name: str, default: str) -> Path:
    """A directory setting; relative paths are taken from the project folder."""
    path = Path((_raw(env, name) or default).strip())
    return path if path.is_absolute() else PROJECT_ROOT / path


def _command(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A command line, split into words as a shell would (quotes, backslashes) but run
    without one; its program named by an absolute path."""
    raw = (_raw(env, name) or "").strip()
    if not raw:
        return ()
    try:
        words = tuple(shlex.split(raw))
    except ValueError as exc:
        raise ConfigError(f"{name}: cannot be split into words: {exc}") from None
    if not words or not Path(words[0]).is_absolute():
        raise ConfigError(f"{name}: name the program by its absolute path, e.g. /usr/local/bin/x")
    return words


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class Settings:
    """Everything the portal reads from its environment."""

    data_dir: Path
    database_url: str
    log_dir: Path = PROJECT_ROOT / "logs"
    ssl_dir: Path = PROJECT_ROOT / "ssl"
    bind: str = "0.0.0.0:5000"  # noqa: S104
    workers: int = 2
    admin_password: str | None = field(default=None, repr=False)
    session_idle_minutes: int = 30
    session_max_hours: int = 12
    trusted_proxies: tuple = ()
    log_level: str = "INFO"
    scheduler_enabled: bool = True
    secret_key: str | None = field(default=None, repr=False)
    test_interval_seconds: int = 0
    backup_keep: int = 14
    audit_retention_days: int = 400
    reveals_per_minute: int = 120
    metrics_allow: tuple = ()
    external_url: str | None = None
    audit_forward_plaintext: bool = False
    # The break-glass copy's hand-off: program and arguments (the copy's path is added last).
    break_glass_command: tuple[str, ...] = field(default=(), repr=False)
    break_glass_timeout: int = 120

    @property
    def forwarded_allow_ips(self) -> str:
        """Gunicorn's forwarded_allow_ips: every trusted proxy address, or none at all."""
        addresses = (str(address) for network in self.trusted_proxies for address in network)
        return ",".join(dict.fromkeys(addresses))

    @property
    def engine_url(self) -> str:
        """The URL SQLAlchemy connects with: `postgresql://` through psycopg2, the driver the
        portal ships (SQLAlchemy 2.1 would otherwise look for psycopg 3)."""
        if self.database_url.startswith("postgresql://"):
            return "postgresql+psycopg2://" + self.database_url[len("postgresql://") :]
        return self.database_url

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite file when the database is SQLite, else None."""
        prefix = "sqlite:///"
        if self.database_url.startswith(prefix):
            return Path(self.database_url[len(prefix) :])
        return None


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Parse the environment into Settings, raising ConfigError that names the variable."""
    env = os.environ if env is None else env
    data_dir = _path(env, "PORTAL_DATA_DIR", "instance")
    log_dir = _path(env, "PORTAL_LOG_DIR", "logs")
    ssl_dir = _path(env, "PORTAL_SSL_DIR", "ssl")
    database_url = _raw(env, "DATABASE_URL") or f"sqlite:///{data_dir / 'vcf_credentials.db'}"
    if not database_url.startswith(("sqlite:///", "postgresql://", "postgresql+psycopg2://")):
        raise ConfigError("DATABASE_URL: only sqlite:/// and postgresql:// URLs are supported")
    admin_password = _raw(env, "PORTAL_ADMIN_PASSWORD")
    if admin_password is not None and not 12 <= len(admin_password) <= 128:
        raise ConfigError("PORTAL_ADMIN_PASSWORD: must be 12 to 128 characters long")
    log_level = (_raw(env, "PORTAL_LOG_LEVEL") or "INFO").strip().upper()
    if log_level not in _LOG_LEVELS:
        raise ConfigError(f"PORTAL_LOG_LEVEL: expected one of {', '.join(_LOG_LEVELS)}")
    secret_key = _raw(env, "PORTAL_SECRET_KEY")
    if secret_key is not None and len(secret_key) < 32:
        raise ConfigError("PORTAL_SECRET_KEY: must be at least 32 characters long")
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        log_dir=log_dir,
        ssl_dir=ssl_dir,
        bind=_bind(env),
        workers=_int(env, "PORTAL_WORKERS", 2, 1, 64),
        admin_password=admin_password,
        session_idle_minutes=_int(env, "PORTAL_SESSION_IDLE_MINUTES", 30, 1, 1440),
        session_max_hours=_int(env, "PORTAL_SESSION_MAX_HOURS", 12, 1, 720),
        trusted_proxies=_networks(env),
        log_level=log_level,
        scheduler_enabled=_bool(env, "PORTAL_SCHEDULER", True),
        secret_key=secret_key,
        test_interval_seconds=_int(env, "PORTAL_TEST_INTERVAL_SECONDS", 0, 0, 86400),
        backup_keep=_int(env, "PORTAL_BACKUP_KEEP", 14, 1, 1000),
        # PCI DSS 10.5.1 keeps a year of audit trail, three months of it at hand: 90 at least.
        audit_retention_days=_int(env, "PORTAL_AUDIT_RETENTION_DAYS", 400, 90, 36500),
        reveals_per_minute=_int(env, "PORTAL_REVEALS_PER_MINUTE", 120, 1, 100000),
        metrics_allow=tuple(_cidrs(env, "PORTAL_METRICS_ALLOW")),
        audit_forward_plaintext=_bool(env, "PORTAL_AUDIT_FORWARD_PLAINTEXT", False),
        external_url=_external_url(env),
        break_glass_command=_command(env, "PORTAL_BREAK_GLASS_COMMAND"),
        break_glass_timeout=_int(env, "PORTAL_BREAK_GLASS_TIMEOUT", 120, 1, 3600),
    )
