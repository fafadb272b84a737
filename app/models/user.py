from __future__ import annotations

from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import Boolean, CheckConstraint, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.base import UTCDateTime, created_column, id_column

TIERS = ("free", "pro")


class User(UserMixin, db.Model):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("credits_monthly >= 0", name="monthly_non_negative"),
        CheckConstraint("credits_purchased >= 0", name="purchased_non_negative"),
    )

    id: Mapped[str] = id_column()
    email: Mapped[str] = mapped_column(String(320), unique=True, nullable=False)
    name: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    google_sub: Mapped[str | None] = mapped_column(String(255), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    # Bumped at sign-out and on disable: a session cookie carries the version it was issued at.
    session_version: Mapped[int] = mapped_column(Integer, default=1, nullable=False)
    tier: Mapped[str] = mapped_column(String(16), default="free", nullable=False)
    credits_monthly: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    credits_purchased: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    credits_resets_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Written by the same UPDATE that changes the buckets and read back with RETURNING, so the
    # ledger row records the exact split without a read-modify-write (services/credits.py).
    last_monthly_delta: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    last_purchased_delta: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(255))
    last_active_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = created_column()

    @property
    def credits_balance(self) -> int:
        return self.credits_monthly + self.credits_purchased

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive users
        return not self.disabled

    def get_id(self) -> str:
        """Session identity = user id + session version, so a bumped version logs out."""
        return f"{self.id}:{self.session_version}"
