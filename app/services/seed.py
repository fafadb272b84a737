"""The demo account `make run` signs you into: demo@example.com / demo."""

from __future__ import annotations

from app.models import User
from app.services import accounts

DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "demo"  # noqa: S105  # nosec B105  # documented demo credentials, dev only


def seed_demo() -> tuple[User, bool]:
    """Create the demo user (idempotent). Returns (user, created)."""
    existing = accounts.get_by_email(DEMO_EMAIL)
    if existing is not None:
        return existing, False
    user = accounts.create_user(DEMO_EMAIL, DEMO_PASSWORD, name="Demo", min_password=4)
    return user, True
