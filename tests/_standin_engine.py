# TEMPORARY local stand-in for the engine branch's generation service; deleted before finishing.
import sys
import threading
import time
import types

from flask import current_app

import app.services as services_pkg
from app.extensions import db
from app.models import Generation, utcnow
from app.providers import get_provider
from app.services import credits, imaging

module = types.ModuleType("app.services.generations")


def create(project, user, params, *, api_key=None, idempotency_key=None, live_cache_key=None):
    gen = Generation(
        project_id=project.id,
        user_id=user.id,
        api_key_id=api_key.id if api_key else None,
        prompt=params["prompt"],
        aspect_ratio=params["aspectRatio"],
        model="local",
        live_cache_key=live_cache_key,
        credits_charged=1,
    )
    db.session.add(gen)
    db.session.flush()
    credits.debit(user.id, 1, generation_id=gen.id)
    db.session.commit()
    application = current_app._get_current_object()
    threading.Thread(target=_run, args=(application, gen.id), daemon=True).start()
    return gen, True


def _run(application, gen_id):
    with application.app_context():
        gen = db.session.get(Generation, gen_id)
        gen.status = "processing"
        db.session.commit()
        result = get_provider(application.config).generate(
            prompt=gen.prompt,
            negative_prompt=None,
            aspect_ratio=gen.aspect_ratio,
            references=[],
            seed=None,
            model=None,
        )
        image = imaging.ingest(
            gen.project_id, result.data, source="generated", generation_id=gen.id
        )
        gen.output_image_id = image.id
        gen.status = "success"
        gen.completed_at = utcnow()
        db.session.commit()
        db.session.remove()


def wait(generation_id, timeout):
    deadline = time.monotonic() + timeout
    while True:
        db.session.expire_all()
        gen = db.session.get(Generation, generation_id)
        if gen.is_terminal or time.monotonic() >= deadline:
            return gen
        time.sleep(0.05)


module.create = create
module.wait = wait
sys.modules["app.services.generations"] = module
services_pkg.generations = module
