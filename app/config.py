"""Every setting Pictor reads, taken from the environment once (API.md §12)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

DEFAULT_INSTANCE = Path(__file__).resolve().parent.parent / "instance"


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    return int(raw) if raw not in (None, "") else default


def _pool_options(env: dict[str, str], database_url: str) -> dict[str, int]:
    """A pooled connection for every thread of a web process, and as many again for the short
    second connection a request may hold (a live HIT, an API key's last-use stamp). A smaller
    pool than the threads makes a busy process open and close connections per request."""
    if database_url.startswith("sqlite"):
        return {}
    threads = _int(env, "GUNICORN_THREADS", 8)
    return {"pool_size": threads, "max_overflow": threads}


def _secret_key(env: dict[str, str], instance: Path, production: bool) -> str:
    key = env.get("SECRET_KEY")
    if key:
        return key
    if production:
        raise RuntimeError("SECRET_KEY is required when PICTOR_ENV=production")
    path = instance / "secret_key"
    if not path.exists():
        instance.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def _log_format(env: dict[str, str], production: bool) -> str:
    wanted = (env.get("PICTOR_LOG_FORMAT") or ("json" if production else "text")).lower()
    if wanted not in ("json", "text"):
        raise RuntimeError("PICTOR_LOG_FORMAT must be json or text")
    return wanted


def _log_level(env: dict[str, str]) -> str:
    return (env.get("PICTOR_LOG_LEVEL") or "INFO").upper()


def server_settings(env: dict[str, str] | None = None) -> dict[str, Any]:
    """What gunicorn.conf.py needs: the web server's shape, read from the environment."""
    env = dict(os.environ if env is None else env)
    production = env.get("PICTOR_ENV", "development") == "production"
    return {
        "bind": f"{env.get('HOST') or '127.0.0.1'}:{_int(env, 'PORT', 8000)}",
        "workers": _int(env, "WEB_CONCURRENCY", min(os.cpu_count() or 1, 4)),
        "threads": _int(env, "GUNICORN_THREADS", 8),
        "timeout": _int(env, "GUNICORN_TIMEOUT", 90),
        "graceful_timeout": _int(env, "GUNICORN_GRACEFUL_TIMEOUT", 75),
        "keepalive": _int(env, "GUNICORN_KEEPALIVE", 5),
        "log_format": _log_format(env, production),
        "log_level": _log_level(env).lower(),
        "prometheus_multiproc_dir": env.get("PROMETHEUS_MULTIPROC_DIR") or None,
        "control_socket": env.get("GUNICORN_CONTROL_SOCKET") or None,
    }


def load_config(env: dict[str, str] | None = None) -> dict[str, Any]:
    """Build the configuration mapping from the environment (or a given dict)."""
    env = dict(os.environ if env is None else env)
    production = env.get("PICTOR_ENV", "development") == "production"
    instance = Path(env.get("PICTOR_INSTANCE_DIR") or DEFAULT_INSTANCE)
    gemini_key = env.get("GEMINI_API_KEY") or None
    storage_dir = env.get("STORAGE_DIR") or str(instance / "storage")
    database_url = env.get("DATABASE_URL") or f"sqlite:///{instance / 'pictor.db'}"
    if database_url.startswith("postgres://"):
        database_url = "postgresql+psycopg://" + database_url.removeprefix("postgres://")
    elif database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url.removeprefix("postgresql://")

    return {
        "PICTOR_ENV": "production" if production else env.get("PICTOR_ENV", "development"),
        "PRODUCTION": production,
        "INSTANCE_DIR": str(instance),
        "SECRET_KEY": _secret_key(env, instance, production),
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": _pool_options(env, database_url),
        "REDIS_URL": env.get("REDIS_URL") or None,
        "STORAGE_BACKEND": env.get("STORAGE_BACKEND", "local"),
        "STORAGE_DIR": storage_dir,
        "S3_BUCKET": env.get("S3_BUCKET"),
        "S3_ENDPOINT_URL": env.get("S3_ENDPOINT_URL"),
        "S3_REGION": env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION") or "us-east-1",
        "IMAGE_PROVIDER": env.get("IMAGE_PROVIDER") or ("gemini" if gemini_key else "local"),
        "GEMINI_API_KEY": gemini_key,
        "GEMINI_BASE_URL": env.get("GEMINI_BASE_URL") or None,
        "GEMINI_IMAGE_MODEL": env.get("GEMINI_IMAGE_MODEL", "gemini-2.5-flash-image"),
        "GEMINI_TEXT_MODEL": env.get("GEMINI_TEXT_MODEL", "gemini-2.5-flash"),
        "GEMINI_PRO_MODELS": tuple(
            m.strip()
            for m in env.get("GEMINI_PRO_MODELS", "gemini-3-pro-image-preview").split(",")
            if m.strip()
        ),
        "GEMINI_TIMEOUT_MS": _int(env, "GEMINI_TIMEOUT_MS", 60_000),
        "GEMINI_RETRY_ATTEMPTS": _int(env, "GEMINI_RETRY_ATTEMPTS", 3),
        "GEMINI_DEADLINE_MS": _int(env, "GEMINI_DEADLINE_MS", 150_000),
        "GEMINI_RETRY_BASE_DELAY": float(env.get("GEMINI_RETRY_BASE_DELAY") or 1.0),
        "LOCAL_PROVIDER_DELAY_MS": _int(env, "LOCAL_PROVIDER_DELAY_MS", 0),
        "PUBLIC_BASE_URL": (env.get("PUBLIC_BASE_URL") or "").rstrip("/") or None,
        "RATELIMIT_GENERATIONS": env.get("RATELIMIT_GENERATIONS", "100/hour"),
        "RATELIMIT_DEFAULT": env.get("RATELIMIT_DEFAULT", "1000/hour"),
        "CREDITS_PER_GENERATION": _int(env, "CREDITS_PER_GENERATION", 1),
        "FREE_MONTHLY_CREDITS": _int(env, "FREE_MONTHLY_CREDITS", 50),
        "PRO_MONTHLY_CREDITS": _int(env, "PRO_MONTHLY_CREDITS", 1000),
        "TOPUP_CREDITS": _int(env, "TOPUP_CREDITS", 500),
        "CRON_SECRET": env.get("CRON_SECRET") or None,
        "STRIPE_SECRET_KEY": env.get("STRIPE_SECRET_KEY") or None,
        "STRIPE_WEBHOOK_SECRET": env.get("STRIPE_WEBHOOK_SECRET") or None,
        "STRIPE_PRICE_PRO": env.get("STRIPE_PRICE_PRO") or None,
        "STRIPE_PRICE_TOPUP": env.get("STRIPE_PRICE_TOPUP") or None,
        "STRIPE_API_BASE": env.get("STRIPE_API_BASE") or None,
        "GOOGLE_CLIENT_ID": env.get("GOOGLE_CLIENT_ID") or None,
        "GOOGLE_CLIENT_SECRET": env.get("GOOGLE_CLIENT_SECRET") or None,
        "GOOGLE_DISCOVERY_URL": env.get(
            "GOOGLE_DISCOVERY_URL", "https://accounts.google.com/.well-known/openid-configuration"
        ),
        "MAX_UPLOAD_BYTES": _int(env, "MAX_UPLOAD_BYTES", 5 * 1024 * 1024),
        "IMAGE_RETENTION_DAYS": _int(env, "IMAGE_RETENTION_DAYS", 30),
        "LIVE_WAIT_SECONDS": _int(env, "LIVE_WAIT_SECONDS", 60),
        "WEBHOOK_ALLOW_PRIVATE": _bool(env.get("WEBHOOK_ALLOW_PRIVATE")),
        "METRICS_TOKEN": env.get("METRICS_TOKEN") or None,
        # werkzeug's scrypt default; tests use a fast method so hashing doesn't dominate the suite.
        "PASSWORD_HASH_METHOD": env.get("PASSWORD_HASH_METHOD") or "scrypt",
        "PROMETHEUS_MULTIPROC_DIR": env.get("PROMETHEUS_MULTIPROC_DIR") or None,
        "LOG_FORMAT": _log_format(env, production),
        "LOG_LEVEL": _log_level(env),
        "JOB_TIMEOUT_SECONDS": _int(env, "JOB_TIMEOUT_SECONDS", 180),
        # Queue (app/queue.py, jobs/worker.py). Without REDIS_URL: "auto" runs a private
        # redis-server when the binary exists, else an in-process fake Redis.
        "EMBEDDED_QUEUE": env.get("EMBEDDED_QUEUE", "auto"),
        "EMBEDDED_WORKER": _bool(env.get("EMBEDDED_WORKER"), True),
        "SWEEP_INTERVAL_SECONDS": _int(env, "SWEEP_INTERVAL_SECONDS", 30),
        "WORKER_MONITOR_SECONDS": _int(env, "WORKER_MONITOR_SECONDS", 5),
        # A work-horse is replaced after this many jobs: whatever it leaks stays bounded.
        "WORKER_HORSE_JOBS": max(1, _int(env, "WORKER_HORSE_JOBS", 100)),
        "WORKER_LOST_AFTER_SECONDS": _int(env, "WORKER_LOST_AFTER_SECONDS", 30),
        "WEBHOOK_TIMEOUT_SECONDS": float(env.get("WEBHOOK_TIMEOUT_SECONDS") or 10),
        "WEBHOOK_RETRY_BASE_SECONDS": float(env.get("WEBHOOK_RETRY_BASE_SECONDS") or 10),
        # Flask and extensions
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": production,
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_SECURE": production,
        "PREFERRED_URL_SCHEME": "https" if production else "http",
        "MAX_CONTENT_LENGTH": _int(env, "MAX_UPLOAD_BYTES", 5 * 1024 * 1024) + 1024 * 1024,
        "WTF_CSRF_TIME_LIMIT": None,
        "WTF_CSRF_HEADERS": ["X-CSRFToken", "X-CSRF-Token"],
        "JSON_SORT_KEYS": False,
        "TESTING": _bool(env.get("PICTOR_TESTING")),
    }
