"""GET /account and the credit ledger (API.md §8)."""

from flask import request

from app.api import bp, serializers
from app.api.auth import principal
from app.api.helpers import one, page, pagination_args
from app.database import read_only
from app.services import credits


@bp.get("/account")
@read_only
def get_account():
    return one(serializers.account(principal().user))


@bp.get("/credits/transactions")
@read_only
def list_transactions():
    limit, offset = pagination_args()
    rows, total = credits.transactions(
        principal().user_id, type_=request.args.get("type") or None, limit=limit, offset=offset
    )
    return page(rows, serializers.transaction, total=total, limit=limit, offset=offset)
