"""The demo account `make run` signs you into: demo@example.com / demo, with a few pictures."""

from __future__ import annotations

import logging

from flask import current_app

from app.models import User
from app.providers import provider_name
from app.services import accounts, generations, projects

log = logging.getLogger(__name__)

DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "demo"  # noqa: S105  (documented demo credentials, development only)
DEMO_PROMPTS = (
    {"prompt": "A lighthouse on a cliff at dusk, warm light", "aspectRatio": "16:9", "seed": 1},
    {"prompt": "A red fox curled up in fresh snow", "aspectRatio": "1:1", "seed": 2},
    {"prompt": "Tall ferns in morning fog", "aspectRatio": "9:16", "seed": 3, "alias": "@ferns"},
    {"prompt": "The same ferns in autumn, @ferns", "aspectRatio": "4:3", "seed": 4},
)


def seed_demo() -> tuple[User, bool]:
    """Create the demo user with a few generated images (idempotent). Returns (user, created)."""
    existing = accounts.get_by_email(DEMO_EMAIL)
    if existing is not None:
        return existing, False
    user = accounts.create_user(DEMO_EMAIL, DEMO_PASSWORD, name="Demo", min_password=4)
    generate_demo_images(user)
    return user, True


def generate_demo_images(user: User) -> int:
    """Run the demo prompts in this process (no queue needed). Only with the local provider,
    which costs nothing outside. Returns how many images were made."""
    if provider_name(current_app.config) != "local":
        log.info("demo images are drawn by the local provider only; skipped")
        return 0
    project = projects.list_projects(user)[0]
    made = 0
    for params in DEMO_PROMPTS:
        generation, _ = generations.create(project, user, dict(params), enqueue=False)
        generations.run(generation.id)
        made += generations.get_generation(project.id, generation.id).status == "success"
    return made
