"""`flask --app wsgi …` commands (API.md §11)."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import select

from app.errors import DomainError
from app.extensions import db
from app.models import Project, User

user_cli = AppGroup("user", help="Manage users.")
apikey_cli = AppGroup("apikey", help="Manage API keys.")


def _fail(exc: DomainError) -> None:
    raise click.ClickException(exc.message)


def _user(email: str) -> User:
    from app.services import accounts

    user = accounts.get_by_email(email)
    if user is None:
        raise click.ClickException(f"No user with email {email}")
    return user


@user_cli.command("create")
@click.argument("email")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--admin", is_flag=True, help="Give the user the admin pages.")
@click.option("--tier", type=click.Choice(["free", "pro"]), default="free", show_default=True)
def create_user(email: str, password: str, admin: bool, tier: str) -> None:
    """Create a user with a default project."""
    from app.services import accounts

    try:
        user = accounts.create_user(email, password, is_admin=admin, tier=tier)
    except DomainError as exc:
        _fail(exc)
    click.echo(f"Created {user.email} ({user.tier}{', admin' if admin else ''})")


@apikey_cli.command("create")
@click.argument("email")
@click.option("--project", "project_name", help="Project name (default: the first project).")
@click.option("--name", "label", default="CLI key", show_default=True, help="A label for the key.")
def create_apikey(email: str, project_name: str | None, label: str) -> None:
    """Print a new API key; the key alone is on the last line."""
    from app.services import api_keys, projects

    user = _user(email)
    owned = projects.list_projects(user)
    if project_name:
        owned = [p for p in owned if p.name == project_name]
    if not owned:
        raise click.ClickException(f"{email} has no project named {project_name!r}")
    created = api_keys.create_key(user, owned[0], label)
    click.echo(f"Key for project {owned[0].name} ({owned[0].id}), shown once:")
    click.echo(created.plaintext)


@click.command("seed-demo")
def seed_demo() -> None:
    """Create demo@example.com / demo with a project and a few images (idempotent)."""
    from app.services import seed

    user, created = seed.seed_demo()
    project = db.session.scalar(select(Project).where(Project.owner_id == user.id))
    state = "created" if created else "already present"
    click.echo(
        f"Demo account {user.email} / demo {state}; project {project.name if project else '-'}"
    )


@click.command("worker")
@click.option("--burst", is_flag=True, help="Quit once the queues are empty.")
def worker(burst: bool) -> None:
    """Run an RQ worker with the app context, RQ's scheduler and the periodic jobs."""
    from flask import current_app

    from app import queue
    from jobs.worker import run_worker

    runtime = queue.runtime()
    if runtime.embedded:
        raise click.ClickException(
            "REDIS_URL is not set: the web process runs the embedded worker itself. "
            "Set REDIS_URL to run separate workers."
        )
    click.echo(f"Pictor worker: {runtime.describe()}")
    run_worker(current_app._get_current_object(), runtime.new_connection(), burst=burst)


def register_cli(app: Flask) -> None:
    app.cli.add_command(user_cli)
    app.cli.add_command(apikey_cli)
    app.cli.add_command(seed_demo)
    app.cli.add_command(worker)
