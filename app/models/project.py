from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.base import UTCDateTime, created_column, id_column, utcnow


class Project(db.Model):
    __tablename__ = "projects"

    id: Mapped[str] = id_column()
    owner_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(String(120), nullable=False)
    default_aspect_ratio: Mapped[str] = mapped_column(String(8), default="1:1", nullable=False)
    default_model: Mapped[str | None] = mapped_column(String(120))
    live_secret: Mapped[str] = mapped_column(String(128), nullable=False)
    live_secret_previous: Mapped[str | None] = mapped_column(String(128))
    live_secret_rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    live_allowed_origins: Mapped[list[str]] = mapped_column(JSON, default=list, nullable=False)
    live_daily_limit: Mapped[int | None] = mapped_column(Integer)
    webhook_secret: Mapped[str] = mapped_column(String(128), nullable=False)
    # Up to 1 MB, read only by app.services.canvas: not loaded with the project (most views
    # load it, for its id, name or settings).
    canvas_state: Mapped[dict[str, Any]] = mapped_column(
        JSON, default=dict, nullable=False, deferred=True
    )
    canvas_version: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    canvas_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )

    owner = relationship("User", lazy="joined")


class ApiKey(db.Model):
    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_project_created", "project_id", "created_at"),)

    id: Mapped[str] = id_column()
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(String(120), nullable=False)
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    created_at: Mapped[datetime] = created_column()
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    project = relationship("Project", lazy="joined")
