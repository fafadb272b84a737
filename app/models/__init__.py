"""All models, imported here so Alembic and the app see one metadata."""

from app.models.base import is_uuid, isoformat, new_id, storable_text, utcnow
from app.models.credit import TRANSACTION_TYPES, CreditTransaction, StripeEvent
from app.models.generation import (
    STAGES,
    STATUSES,
    TERMINAL_STATUSES,
    Generation,
    WebhookDelivery,
)
from app.models.image import IMAGE_SOURCES, Flow, FlowAlias, Image
from app.models.live import LiveCacheEntry
from app.models.project import ApiKey, Project
from app.models.user import TIERS, User

__all__ = [
    "IMAGE_SOURCES",
    "STAGES",
    "STATUSES",
    "TERMINAL_STATUSES",
    "TIERS",
    "TRANSACTION_TYPES",
    "ApiKey",
    "CreditTransaction",
    "Flow",
    "FlowAlias",
    "Generation",
    "Image",
    "LiveCacheEntry",
    "Project",
    "StripeEvent",
    "User",
    "WebhookDelivery",
    "is_uuid",
    "isoformat",
    "new_id",
    "storable_text",
    "utcnow",
]
