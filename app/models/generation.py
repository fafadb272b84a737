from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.base import UTCDateTime, created_column, id_column

STATUSES = ("pending", "processing", "success", "failed", "cancelled")
TERMINAL_STATUSES = ("success", "failed", "cancelled")
STAGES = ("queued", "enhancing", "resolving", "generating", "storing", "done")


class Generation(db.Model):
    __tablename__ = "generations"
    __table_args__ = (
        UniqueConstraint("project_id", "idempotency_key", name="uq_generations_idempotency"),
        Index("ix_generations_project_created", "project_id", "created_at"),
        Index("ix_generations_flow_created", "flow_id", "created_at"),
        Index("ix_generations_status_deadline", "status", "deadline_at"),
    )

    id: Mapped[str] = id_column()
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), nullable=False
    )
    flow_id: Mapped[str | None] = mapped_column(ForeignKey("flows.id", ondelete="SET NULL"))
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    api_key_id: Mapped[str | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="SET NULL"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16), default="generate", nullable=False)
    status: Mapped[str] = mapped_column(String(16), default="pending", nullable=False)
    stage: Mapped[str] = mapped_column(String(16), default="queued", nullable=False)
    prompt: Mapped[str] = mapped_column(Text, nullable=False)
    enhanced_prompt: Mapped[str | None] = mapped_column(Text)
    negative_prompt: Mapped[str | None] = mapped_column(Text)
    aspect_ratio: Mapped[str] = mapped_column(String(8), nullable=False)
    seed: Mapped[int | None] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(120), nullable=False)
    template: Mapped[str | None] = mapped_column(String(32))
    auto_enhance: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    # Requested references as given ("@hero", ids) and as resolved [{imageId, ref, scope}].
    reference_inputs: Mapped[list[str]] = mapped_column(JSON, default=list, nullable=False)
    reference_images: Mapped[list[dict[str, Any]]] = mapped_column(
        JSON, default=list, nullable=False
    )
    alias: Mapped[str | None] = mapped_column(String(64))
    flow_alias: Mapped[str | None] = mapped_column(String(64))
    source_image_id: Mapped[str | None] = mapped_column(String(36))
    upscale_factor: Mapped[int | None] = mapped_column(Integer)
    output_image_id: Mapped[str | None] = mapped_column(String(36))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    credits_charged: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, nullable=False)
    request_id: Mapped[str | None] = mapped_column(String(255))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    webhook_url: Mapped[str | None] = mapped_column(Text)
    regenerated_from: Mapped[str | None] = mapped_column(String(36))
    live_cache_key: Mapped[str | None] = mapped_column(String(64), index=True)
    job_id: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    provider_ms: Mapped[int | None] = mapped_column(Integer)
    processing_ms: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = created_column()
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class WebhookDelivery(db.Model):
    """One client webhook (API.md §9); retried with backoff until 6 tries."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_status_next", "status", "next_attempt_at"),)

    id: Mapped[str] = id_column()  # also the `webhook-id` header, stable across retries
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), nullable=False
    )
    generation_id: Mapped[str] = mapped_column(String(36), nullable=False, index=True)
    url: Mapped[str] = mapped_column(Text, nullable=False)
    event_type: Mapped[str] = mapped_column(String(64), nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    status: Mapped[str] = mapped_column(String(16), default="pending", nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = created_column()
