"""Access decorators shared by every web blueprint."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import abort
from flask_login import current_user, login_required

__all__ = ["admin_required", "login_required"]


def admin_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Admins only; everyone else (signed in or not) gets 404, so the page is not revealed."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_authenticated or not current_user.is_admin:
            abort(404)
        return view(*args, **kwargs)

    return wrapped
