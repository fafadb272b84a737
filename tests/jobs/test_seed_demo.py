"""`flask seed-demo` makes the demo account with a few pictures, drawn in-process."""

from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models import Generation, Image
from app.services import seed


def test_seed_demo_generates_demo_images_once(app, runner):
    result = runner.invoke(args=["seed-demo"])
    assert result.exit_code == 0, result.output
    assert "demo@example.com" in result.output
    generations = db.session.scalars(select(Generation)).all()
    assert len(generations) == len(seed.DEMO_PROMPTS)
    assert {g.status for g in generations} == {"success"}
    images = db.session.scalars(select(Image)).all()
    assert len(images) == len(seed.DEMO_PROMPTS)
    assert "@ferns" in {i.alias for i in images}
    # The last prompt mentions @ferns, so it used that picture as a reference.
    last = max(generations, key=lambda g: g.created_at)
    assert [r["ref"] for r in last.reference_images] == ["@ferns"]

    again = runner.invoke(args=["seed-demo"])
    assert again.exit_code == 0 and "already present" in again.output
    assert len(db.session.scalars(select(Generation)).all()) == len(seed.DEMO_PROMPTS)
