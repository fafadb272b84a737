"""Maintenance jobs, run on the maintenance queue by the scheduler (jobs/worker.py)."""

from __future__ import annotations

from jobs import app_context


def sweep_stuck() -> int:
    """Fail and refund generations whose worker died (API.md §4 "nothing is lost")."""
    from app.services import generations

    with app_context():
        return generations.sweep_stuck()


def deliver_webhook(delivery_id: str) -> None:
    from app.services import webhooks

    with app_context():
        webhooks.deliver(delivery_id)


def deliver_due_webhooks() -> int:
    from app.services import webhooks

    with app_context():
        return webhooks.deliver_due()


def reset_credits() -> int:
    from app.services import credits

    with app_context():
        return credits.reset_due()


def purge_images() -> int:
    from app.services import images

    with app_context():
        return images.purge_expired()


def remove_project_files(project_id: str) -> None:
    from app.services import projects

    with app_context():
        projects.remove_project_files(project_id)


def flush_live_hits() -> int:
    from app.services import live

    with app_context():
        return live.flush_hit_counts()
