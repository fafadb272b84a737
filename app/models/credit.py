from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.base import created_column, id_column

TRANSACTION_TYPES = ("usage", "refund", "reset", "topup", "grant", "adjustment")


class CreditTransaction(db.Model):
    """The ledger: every change of a balance is one row, written with the change."""

    __tablename__ = "credit_transactions"
    __table_args__ = (Index("ix_credit_transactions_user_created", "user_id", "created_at"),)

    id: Mapped[str] = id_column()
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    type: Mapped[str] = mapped_column(String(16), nullable=False)
    amount: Mapped[int] = mapped_column(Integer, nullable=False)
    monthly_delta: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    purchased_delta: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    balance_after: Mapped[int] = mapped_column(Integer, nullable=False)
    generation_id: Mapped[str | None] = mapped_column(String(36), index=True)
    note: Mapped[str | None] = mapped_column(Text)
    # Makes an operation happen once: "usage:<gen>", "refund:<gen>", "topup:<checkout>", …
    dedupe_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = created_column()


class StripeEvent(db.Model):
    """Stripe event ids already applied (a replay changes nothing)."""

    __tablename__ = "stripe_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(120), nullable=False)
    created_at: Mapped[datetime] = created_column()
