"""/admin: admins only (404 for everyone else), users, credit corrections, resets, failures."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import CreditTransaction, Generation, User, utcnow
from app.services import credits
from tests import factories


@pytest.fixture
def admin_user(app):
    return factories.make_user("admin@example.com", is_admin=True)


@pytest.fixture
def as_admin(client, admin_user, auth):
    auth.login(admin_user.email)
    return client


def page(client, path: str, **kwargs) -> str:
    response = client.get(path, **kwargs)
    assert response.status_code == 200, (path, response.status_code)
    return response.get_data(as_text=True)


def token(client, path: str) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', page(client, path)).group(1)


def fresh(user: User) -> User:
    db.session.expire_all()
    return db.session.get(User, user.id)


ADMIN_PAGES = ["/admin", "/admin/users", "/admin/queue"]


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_anonymous_visitors_get_404(client, path):
    assert client.get(path).status_code == 404


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_signed_in_non_admins_get_404(client, user, auth, path):
    auth.login(user.email)
    assert client.get(path).status_code == 404
    assert client.get(f"/admin/users/{user.id}").status_code == 404


def test_non_admins_cannot_post_admin_actions(client, user, auth):
    auth.login(user.email)
    csrf = token(client, "/billing")
    target = factories.make_user()
    actions = [
        ("/admin/reset-all", {}),
        (f"/admin/users/{target.id}/credits", {"kind": "grant", "amount": "5", "note": "x"}),
        (f"/admin/users/{target.id}/reset", {}),
        (f"/admin/users/{target.id}/disable", {}),
    ]
    for path, data in actions:
        assert client.post(path, data={"csrf_token": csrf, **data}).status_code == 404
    assert fresh(target).credits_balance == 50 and not fresh(target).disabled
    assert "Admin" not in page(client, "/billing").split("<main", 1)[0]  # no nav link either


def test_the_users_table_shows_tier_balances_and_last_activity(as_admin, admin_user):
    pro = factories.make_user("pro.person@example.com", tier="pro")
    credits.add(pro.id, 12, "topup")
    html = page(as_admin, "/admin/users")
    assert "pro.person@example.com" in html and "admin@example.com" in html
    row = html.split("pro.person@example.com", 1)[1].split("</tr>", 1)[0]
    assert "Pro" in row and ">1,000<" in row and ">12<" in row and ">1,012<" in row
    assert "Never" in row  # never signed in
    admin_row = html.split("admin@example.com", 1)[1].split("</tr>", 1)[0]
    assert "Never" not in admin_row  # signed in just now


def test_search_filters_users_by_email_and_htmx_gets_the_table_alone(as_admin):
    factories.make_user("alice@example.com")
    factories.make_user("bob@example.com")
    html = page(as_admin, "/admin/users?q=ALI")
    assert "alice@example.com" in html and "bob@example.com" not in html

    fragment = page(as_admin, "/admin/users?q=bob", headers={"HX-Request": "true"})
    assert fragment.lstrip().startswith('<div id="users">')
    assert "bob@example.com" in fragment and "alice@example.com" not in fragment

    assert "No users found" in page(as_admin, "/admin/users?q=zzz")


def test_users_are_paginated(as_admin):
    for i in range(26):
        factories.make_user(f"bulk{i:02d}@example.com")
    first = page(as_admin, "/admin/users")
    assert "Showing <strong>1–25</strong> of <strong>27</strong>" in first
    second = page(as_admin, "/admin/users?offset=25")
    assert second.count('href="/admin/users/') == 2 * 2  # two rows, two links each


def test_a_grant_is_a_ledger_row_with_the_note_and_the_admin(as_admin, user):
    path = f"/admin/users/{user.id}"
    response = as_admin.post(
        f"{path}/credits",
        data={
            "csrf_token": token(as_admin, path),
            "kind": "grant",
            "bucket": "purchased",
            "amount": "30",
            "note": "Sorry for the outage",
        },
    )
    assert response.status_code == 303 and response.headers["Location"].endswith(path)
    rows, _ = credits.transactions(user.id, type_="grant")
    assert [(r.amount, r.note) for r in rows] == [
        (30, "Sorry for the outage (by admin@example.com)")
    ]
    assert fresh(user).credits_purchased == 30
    html = page(as_admin, path)
    assert "Sorry for the outage" in html and "+30" in html


def test_an_adjustment_can_remove_credits_but_not_below_zero(as_admin, user):
    path = f"/admin/users/{user.id}"
    csrf = token(as_admin, path)
    base = {"csrf_token": csrf, "kind": "adjustment", "bucket": "monthly", "note": "Abuse"}

    ok = as_admin.post(f"{path}/credits", data={**base, "amount": "-20"})
    too_much = as_admin.post(f"{path}/credits", data={**base, "amount": "-31"})

    assert ok.status_code == 303
    assert too_much.status_code == 400
    assert "below zero" in too_much.get_data(as_text=True)
    assert fresh(user).credits_monthly == 30
    rows, total = credits.transactions(user.id, type_="adjustment")
    assert total == 1 and rows[0].amount == -20
    assert credits.ledger_consistent(user.id)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "grant", "amount": "5", "note": ""}, "Say why in a note"),
        ({"kind": "grant", "amount": "-5", "note": "oops"}, "positive number"),
        ({"kind": "adjustment", "amount": "0", "note": "nothing"}, "must not be zero"),
        ({"kind": "grant", "amount": "lots", "note": "x"}, "Not a valid integer value"),
    ],
)
def test_invalid_credit_changes_are_refused_with_the_reason(as_admin, user, data, message):
    path = f"/admin/users/{user.id}"
    response = as_admin.post(
        f"{path}/credits", data={"csrf_token": token(as_admin, path), "bucket": "purchased", **data}
    )
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert fresh(user).credits_balance == 50


def test_resetting_one_user_refills_their_month_now(as_admin, user):
    credits.debit(user.id, 40, generation_id="gen-admin")
    db.session.commit()
    path = f"/admin/users/{user.id}"
    response = as_admin.post(f"{path}/reset", data={"csrf_token": token(as_admin, path)})
    assert response.status_code == 303
    assert fresh(user).credits_monthly == 50
    rows, _ = credits.transactions(user.id, type_="reset")
    assert rows[0].note == "Reset by admin@example.com" and rows[0].amount == 40


def test_reset_everyone_now_resets_all_users_and_asks_first(as_admin, user, admin_user):
    html = page(as_admin, "/admin")
    assert "Reset everyone now" in html and 'data-confirm="Reset the monthly credits' in html
    credits.debit(user.id, 10, generation_id="gen-all")
    db.session.commit()

    response = as_admin.post(
        "/admin/reset-all", data={"csrf_token": token(as_admin, "/admin")}, follow_redirects=True
    )

    assert "Monthly credits reset for 2 users." in response.get_data(as_text=True)
    assert fresh(user).credits_monthly == 50
    assert fresh(user).credits_resets_at > utcnow() + timedelta(days=27)


def test_disabling_a_user_ends_their_sessions_and_enabling_lets_them_back(app, as_admin, user):
    theirs = app.test_client()
    factories.AuthActions(theirs).login(user.email)
    assert theirs.get("/billing").status_code == 200
    path = f"/admin/users/{user.id}"

    as_admin.post(f"{path}/disable", data={"csrf_token": token(as_admin, path)})

    assert fresh(user).disabled
    signed_out = theirs.get("/billing")
    assert signed_out.status_code in (302, 303)
    assert "/login" in signed_out.headers["Location"]
    assert factories.AuthActions(theirs).login(user.email).status_code == 422
    assert "Enable account" in page(as_admin, path)

    as_admin.post(f"{path}/enable", data={"csrf_token": token(as_admin, path)})
    assert not fresh(user).disabled
    assert factories.AuthActions(theirs).login(user.email).status_code == 303


def test_an_admin_cannot_disable_themselves(as_admin, admin_user):
    path = f"/admin/users/{admin_user.id}"
    assert "Disable account" not in page(as_admin, path)
    response = as_admin.post(f"{path}/disable", data={"csrf_token": token(as_admin, path)})
    assert response.status_code == 400
    assert not fresh(admin_user).disabled


def test_an_unknown_user_is_404(as_admin):
    assert as_admin.get("/admin/users/not-a-uuid").status_code == 404
    assert as_admin.get("/admin/users/00000000-0000-4000-8000-000000000000").status_code == 404


def test_recent_failed_generations_show_their_errors_newest_first(as_admin, user):
    project = factories.first_project(user)
    for minutes, code, message in [
        (30, "PROVIDER_ERROR", "Gemini answered 500"),
        (5, "CONTENT_BLOCKED", "The provider refused this prompt"),
    ]:
        db.session.add(
            Generation(
                project_id=project.id,
                user_id=user.id,
                prompt=f"prompt for {code}",
                aspect_ratio="1:1",
                model="local",
                status="failed",
                error_code=code,
                error_message=message,
                created_at=utcnow() - timedelta(minutes=minutes),
            )
        )
    db.session.add(
        Generation(
            project_id=project.id,
            user_id=user.id,
            prompt="fine",
            aspect_ratio="1:1",
            model="local",
            status="success",
        )
    )
    db.session.commit()

    html = page(as_admin, "/admin")

    assert html.index("CONTENT_BLOCKED") < html.index("PROVIDER_ERROR")
    assert "Gemini answered 500" in html and user.email in html
    assert "prompt for" in html and ">fine<" not in html


def test_no_failures_is_an_empty_state(as_admin):
    assert "No failed generations" in page(as_admin, "/admin")


def test_every_admin_page_is_in_the_main_nav_for_admins(as_admin):
    nav = page(as_admin, "/admin").split("<main", 1)[0]
    assert 'href="/admin"' in nav and 'aria-current="page"' in nav


def test_the_ledger_stays_consistent_after_admin_operations(as_admin, user):
    path = f"/admin/users/{user.id}"
    csrf = token(as_admin, path)
    as_admin.post(
        f"{path}/credits",
        data={"csrf_token": csrf, "kind": "grant", "bucket": "monthly", "amount": "7", "note": "a"},
    )
    as_admin.post(f"{path}/reset", data={"csrf_token": csrf})
    rows = db.session.scalars(
        select(CreditTransaction).where(CreditTransaction.user_id == user.id)
    ).all()
    assert {r.type for r in rows} == {"reset", "grant"}
    assert credits.ledger_consistent(user.id)
