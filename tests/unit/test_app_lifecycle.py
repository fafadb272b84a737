"""An app that is done with is freed: a process that makes many (the test suite, a script
that builds one per task) does not grow by an app and all it holds each time."""

from __future__ import annotations

import gc
import weakref

from app import create_app, queue
from app.extensions import db
from app.services import accounts, api_keys, projects
from tests.conftest import make_config


def _used_app(tmp_path):
    """A weak reference to an app that served a request and ran its embedded queue, then
    was stopped."""
    tmp_path.mkdir()
    app = create_app(make_config(tmp_path, f"sqlite:///{tmp_path / 'pictor.db'}"))
    with app.app_context():
        db.create_all()
        user = accounts.create_user("gone@example.com", "a good password 123")
        key = api_keys.create_key(user, projects.list_projects(user)[0], "gone").plaintext
        queue.get_redis()  # the embedded queue starts, and registers its stop at exit
    # A read-only view: its queries go through the engine's autocommitting form.
    response = app.test_client().get("/api/v1/account", headers={"X-API-Key": key})
    assert response.status_code == 200
    queue.stop(app)
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    return weakref.ref(app)


def test_an_app_done_with_is_freed(tmp_path):
    first = _used_app(tmp_path / "first")
    # A second one: module-level extension objects keep the newest app they were given.
    _used_app(tmp_path / "second")
    gc.collect()

    assert first() is None
