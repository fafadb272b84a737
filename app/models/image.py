from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.base import UTCDateTime, created_column, id_column, utcnow

IMAGE_SOURCES = ("generated", "uploaded")


class Flow(db.Model):
    __tablename__ = "flows"
    __table_args__ = (Index("ix_flows_project_created", "project_id", "created_at"),)

    id: Mapped[str] = id_column()
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), nullable=False
    )
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, nullable=False)
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )


class FlowAlias(db.Model):
    __tablename__ = "flow_aliases"
    __table_args__ = (UniqueConstraint("flow_id", "alias", name="uq_flow_aliases_flow_alias"),)

    id: Mapped[str] = id_column()
    flow_id: Mapped[str] = mapped_column(ForeignKey("flows.id", ondelete="CASCADE"), nullable=False)
    alias: Mapped[str] = mapped_column(String(64), nullable=False)
    image_id: Mapped[str] = mapped_column(
        ForeignKey("images.id", ondelete="CASCADE"), nullable=False, index=True
    )
    created_at: Mapped[datetime] = created_column()


class Image(db.Model):
    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("project_id", "alias", name="uq_images_project_alias"),
        Index("ix_images_project_deleted_created", "project_id", "deleted_at", "created_at"),
        # Newest-first pages and technical aliases walk these backwards (migration 0002_api):
        # `deleted_at IS NULL` cannot give the index above its order, these can.
        Index("ix_images_project_created", "project_id", "created_at", "id"),
        Index("ix_images_project_source_created", "project_id", "source", "created_at", "id"),
        Index("ix_images_flow_created", "flow_id", "created_at"),
        Index("ix_images_deleted_at", "deleted_at"),
    )

    id: Mapped[str] = id_column()
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), nullable=False
    )
    flow_id: Mapped[str | None] = mapped_column(ForeignKey("flows.id", ondelete="SET NULL"))
    source: Mapped[str] = mapped_column(String(16), nullable=False)
    generation_id: Mapped[str | None] = mapped_column(String(36), index=True)
    alias: Mapped[str | None] = mapped_column(String(64))
    # Alias held before a soft delete, given back by restore when still free.
    deleted_alias: Mapped[str | None] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(255), nullable=False)
    thumbnail_key: Mapped[str | None] = mapped_column(String(255))
    mime_type: Mapped[str] = mapped_column(String(32), nullable=False)
    width: Mapped[int] = mapped_column(Integer, nullable=False)
    height: Mapped[int] = mapped_column(Integer, nullable=False)
    file_size: Mapped[int] = mapped_column(Integer, nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    focal_x: Mapped[float] = mapped_column(Float, default=0.5, nullable=False)
    focal_y: Mapped[float] = mapped_column(Float, default=0.5, nullable=False)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, nullable=False)
    created_at: Mapped[datetime] = created_column()
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    @property
    def extension(self) -> str:
        return extension_for(self.mime_type)


def extension_for(mime_type: str) -> str:
    """The file extension an image of this type is served under."""
    return {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}.get(mime_type, "bin")
