from app.api import bp  # noqa: F401
