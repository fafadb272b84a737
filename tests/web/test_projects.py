"""The projects page: cards, create, inline rename and delete."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from app.extensions import db
from app.models import Generation, utcnow
from app.services import projects
from tests import factories
from tests.fakes.gemini import tiny_png

HX = {"HX-Request": "true"}


@pytest.fixture
def signed_in(client, auth, user):
    auth.login(user.email)
    return client


def post(client, path: str, data: dict | None = None, headers: dict | None = None):
    token = factories.csrf_token(client, "/projects")
    return client.post(path, data={**(data or {}), "csrf_token": token}, headers=headers)


def card(page: str, project_id: str) -> str:
    match = re.search(rf'<article[^>]*id="project-{project_id}".*?</article>', page, re.S)
    assert match, f"no card for {project_id}"
    return match.group(0)


def add_image(project_id: str, minutes_ago: int, deleted: bool = False) -> str:
    image = factories.ingest(
        project_id, tiny_png((minutes_ago * 20 % 255, 80, 40)), source="uploaded"
    )
    image.created_at = utcnow() - timedelta(minutes=minutes_ago)
    if deleted:
        image.deleted_at = utcnow()
    db.session.commit()
    return image.id


def test_card_shows_name_created_date_counts_and_links_to_the_project(signed_in, user, project):
    add_image(project.id, 1)
    db.session.add(
        Generation(
            project_id=project.id, user_id=user.id, prompt="a fox", aspect_ratio="1:1", model="m"
        )
    )
    db.session.commit()

    page = signed_in.get("/projects").get_data(as_text=True)

    html = card(page, project.id)
    assert "My first project" in html
    assert "1 image · 1 generation" in html
    assert project.created_at.strftime("%-d %b %Y") in html
    assert f'href="/projects/{project.id}"' in html


def test_card_shows_the_latest_non_deleted_thumbnails(signed_in, project):
    oldest = add_image(project.id, 50)
    newest = [add_image(project.id, minutes) for minutes in (30, 20, 10)]
    deleted = add_image(project.id, 1, deleted=True)

    html = card(signed_in.get("/projects").get_data(as_text=True), project.id)

    shown = re.findall(r'src="/i/([0-9a-f-]{36})/thumb.webp"', html)
    assert shown == list(reversed(newest))
    assert oldest not in html and deleted not in html
    assert "4 images" in html  # the deleted one is not counted


def test_create_project_opens_it_and_lists_it(signed_in, user):
    response = post(signed_in, "/projects", {"name": "  Autumn campaign "})

    created = next(p for p in projects.list_projects(user) if p.name == "Autumn campaign")
    assert response.status_code == 303
    assert response.location == f"/projects/{created.id}"
    assert "Autumn campaign" in signed_in.get("/projects").get_data(as_text=True)


def test_create_from_the_dialog_with_htmx_redirects_the_page(signed_in, user):
    response = post(signed_in, "/projects", {"name": "Moodboard"}, headers=HX)

    created = next(p for p in projects.list_projects(user) if p.name == "Moodboard")
    assert response.headers["HX-Redirect"] == f"/projects/{created.id}"


def test_create_without_a_name_shows_the_form_again_with_the_error(signed_in, user):
    response = post(signed_in, "/projects", {"name": "   "})

    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "Give the project a name" in page or "Name is required" in page
    assert "<html" in page
    assert len(projects.list_projects(user)) == 1


def test_create_error_inside_the_dialog_swaps_only_the_form(signed_in):
    response = post(signed_in, "/projects", {"name": ""}, headers=HX)

    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert page.lstrip().startswith("<form")
    assert "<html" not in page


def test_new_project_page_works_without_scripts(signed_in):
    page = signed_in.get("/projects/new").get_data(as_text=True)
    assert 'action="/projects"' in page and "Create project" in page


def test_rename_inline_swaps_the_card_for_its_form_and_back(signed_in, project):
    url = f"/projects/{project.id}/rename"

    editing = signed_in.get(url, headers=HX)
    assert editing.status_code == 200
    assert "HX-Request" in editing.headers["Vary"]
    form_html = editing.get_data(as_text=True)
    assert form_html.lstrip().startswith(
        f'<article class="card card--interactive" id="project-{project.id}"'
    )
    assert f'hx-post="{url}"' in form_html and 'value="My first project"' in form_html

    saved = post(signed_in, url, {"name": "Product shots"}, headers=HX)
    assert saved.status_code == 200
    html = saved.get_data(as_text=True)
    assert "<html" not in html
    assert "Product shots" in html and '<form class="form form--compact"' not in html
    db.session.refresh(project)
    assert project.name == "Product shots"


def test_rename_without_scripts_is_a_page_and_redirects_back(signed_in, project):
    url = f"/projects/{project.id}/rename"

    page = signed_in.get(url).get_data(as_text=True)
    assert "<html" in page and "Rename project" in page and "hx-post" not in page

    response = post(signed_in, url, {"name": "Renamed"})
    assert response.status_code == 303
    assert response.location == "/projects"
    assert "Renamed" in signed_in.get("/projects").get_data(as_text=True)


def test_rename_to_nothing_keeps_the_form_with_its_error(signed_in, project):
    response = post(signed_in, f"/projects/{project.id}/rename", {"name": " "}, headers=HX)

    assert response.status_code == 422
    assert 'aria-invalid="true"' in response.get_data(as_text=True)
    db.session.refresh(project)
    assert project.name == "My first project"


def test_delete_asks_for_confirmation_and_removes_the_project(signed_in, user, project):
    other = projects.create_project(user, "Scratch")
    page = signed_in.get("/projects").get_data(as_text=True)
    assert re.search(
        rf'action="/projects/{other.id}/delete"\s+data-confirm="Delete “Scratch”', page
    )

    response = post(signed_in, f"/projects/{other.id}/delete")

    assert response.status_code == 303
    assert [p.id for p in projects.list_projects(user)] == [project.id]
    assert "Deleted “Scratch”" in signed_in.get("/projects").get_data(as_text=True)


def test_the_last_project_cannot_be_deleted_and_the_page_says_why(signed_in, user, project):
    response = post(signed_in, f"/projects/{project.id}/delete")

    assert response.status_code == 303
    assert [p.id for p in projects.list_projects(user)] == [project.id]
    assert "You need at least one project" in signed_in.get("/projects").get_data(as_text=True)


def test_empty_state_when_there_are_no_projects(signed_in, project):
    db.session.delete(project)
    db.session.commit()

    page = signed_in.get("/projects").get_data(as_text=True)

    assert "No projects yet" in page
    assert 'data-open-dialog="new-project"' in page


class TestAnotherUsersProject:
    @pytest.fixture
    def theirs(self, app):
        return factories.first_project(factories.make_user("someone-else@example.com"))

    def test_page_is_404(self, signed_in, theirs):
        response = signed_in.get(f"/projects/{theirs.id}")
        assert response.status_code == 404
        assert "Project not found" in response.get_data(as_text=True)

    def test_rename_is_404_and_changes_nothing(self, signed_in, theirs):
        assert signed_in.get(f"/projects/{theirs.id}/rename").status_code == 404
        response = post(signed_in, f"/projects/{theirs.id}/rename", {"name": "Mine now"})
        assert response.status_code == 404
        db.session.refresh(theirs)
        assert theirs.name == "My first project"

    def test_delete_is_404_and_deletes_nothing(self, signed_in, theirs):
        projects.create_project(theirs.owner, "Second")  # so the last-project rule is not why

        assert post(signed_in, f"/projects/{theirs.id}/delete").status_code == 404
        assert len(projects.list_projects(theirs.owner)) == 2

    def test_malformed_id_is_404(self, signed_in):
        assert signed_in.get("/projects/not-a-uuid").status_code == 404


def test_project_pages_need_sign_in(client, project):
    for path in ("/projects", f"/projects/{project.id}", "/projects/new"):
        assert client.get(path).location.startswith("/login?next=")
