"""Domain errors. Services raise them; the API and the web layer map them once."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status = 400
    code = "VALIDATION_ERROR"
    message = "Invalid request"

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.message
        self.code = code or self.code
        self.details = details
        self.headers = headers or {}
        if status is not None:
            self.status = status
        super().__init__(self.message)


class Invalid(DomainError):
    status = 400
    code = "VALIDATION_ERROR"


class Unauthorized(DomainError):
    status = 401
    code = "UNAUTHORIZED"
    message = "Authentication required"


class InsufficientCredits(DomainError):
    status = 402
    code = "INSUFFICIENT_CREDITS"
    message = "Not enough credits"


class Forbidden(DomainError):
    status = 403
    code = "FORBIDDEN"
    message = "Forbidden"


class TierRestricted(DomainError):
    status = 403
    code = "TIER_RESTRICTED"
    message = "This model is not available on your plan"


class NotFound(DomainError):
    status = 404
    code = "NOT_FOUND"
    message = "Not found"


class Conflict(DomainError):
    status = 409
    code = "INVALID_STATE"
    message = "Conflict"


class Gone(DomainError):
    status = 410
    code = "GONE"
    message = "This resource has expired"


class PreconditionFailed(DomainError):
    status = 412
    code = "PRECONDITION_FAILED"
    message = "The resource has changed"


class TooLarge(DomainError):
    status = 413
    code = "FILE_TOO_LARGE"
    message = "File too large"


class UnsupportedMedia(DomainError):
    status = 415
    code = "UNSUPPORTED_MEDIA_TYPE"
    message = "Unsupported image type"


class RateLimited(DomainError):
    status = 429
    code = "RATE_LIMITED"
    message = "Too many requests"


class ServiceUnavailable(DomainError):
    status = 503
    code = "SERVICE_UNAVAILABLE"
    message = "A dependency is unavailable, try again shortly"


class Timeout(DomainError):
    status = 504
    code = "TIMEOUT"
    message = "Timed out waiting for the result"


def not_found(kind: str) -> NotFound:
    """`not_found("Image")` → 404 IMAGE_NOT_FOUND "Image not found" (API.md §1 messages)."""
    return NotFound(f"{kind} not found", code=f"{kind.upper().replace(' ', '_')}_NOT_FOUND")
