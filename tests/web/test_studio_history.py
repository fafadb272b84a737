"""The history page: newest first, search and filters, load more, use again, bulk actions."""

from __future__ import annotations

import io
import re
import zipfile
from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import pytest

from app.extensions import db
from app.models import utcnow
from app.services import generations
from tests import factories

HX = {"HX-Request": "true"}


@pytest.fixture
def signed_in(client, auth, user):
    auth.login(user.email)
    return client


def prompts(html: str) -> list[str]:
    return re.findall(r'class="history-row__prompt"[^>]*>([^<]*)</a>', html)


def links(html: str) -> list[tuple[str, str]]:
    """(href, text without tags) of every link."""
    found = re.findall(r'<a [^>]*href="([^"]+)"[^>]*>(.*?)</a>', html, re.S)
    return [
        (href.replace("&amp;", "&"), re.sub(r"<[^>]+>", "", text).strip()) for href, text in found
    ]


def make(project, user, prompt: str, minutes_ago: int, **kwargs):
    generation = factories.make_generation(project, user, prompt, **kwargs)
    generation.created_at = utcnow() - timedelta(minutes=minutes_ago)
    db.session.commit()
    return generation


def test_history_lists_generations_newest_first(signed_in, user, project):
    make(project, user, "first fox", 30)
    make(project, user, "second fox", 20)
    make(project, user, "third owl", 10)

    response = signed_in.get(f"/projects/{project.id}/history")

    assert response.status_code == 200
    assert "HX-Request" in response.headers["Vary"]
    assert prompts(response.get_data(as_text=True)) == ["third owl", "second fox", "first fox"]


def test_empty_history_points_to_the_canvas(signed_in, project):
    page = signed_in.get(f"/projects/{project.id}/history").get_data(as_text=True)

    assert "No generations yet" in page and f'href="/projects/{project.id}"' in page


def test_search_filters_by_prompt_words_and_htmx_gets_the_results_alone(signed_in, user, project):
    make(project, user, "a red fox in the snow", 3)
    make(project, user, "a red owl", 2)
    make(project, user, "a fox cub", 1)

    full = signed_in.get(f"/projects/{project.id}/history?q=RED+fox")
    fragment = signed_in.get(f"/projects/{project.id}/history?q=RED+fox", headers=HX)

    assert prompts(full.get_data(as_text=True)) == ["a red fox in the snow"]
    html = fragment.get_data(as_text=True)
    assert prompts(html) == ["a red fox in the snow"]
    assert html.lstrip().startswith('<div id="history-results"') and "<html" not in html
    assert 'value="RED fox"' in full.get_data(as_text=True)


def test_no_match_says_so(signed_in, user, project):
    make(project, user, "a fox", 1)

    html = signed_in.get(f"/projects/{project.id}/history?q=zebra", headers=HX).get_data(
        as_text=True
    )

    assert "Nothing matches" in html


def test_filters_by_status_and_flow(signed_in, user, project):
    kept = make(project, user, "kept", 3)
    make(project, user, "broken", 2, fail=("PROVIDER_ERROR", "The model is down"))
    other = make(project, user, "elsewhere", 1)

    failed = signed_in.get(f"/projects/{project.id}/history?status=failed").get_data(as_text=True)
    in_flow = signed_in.get(f"/projects/{project.id}/history?flow_id={kept.flow_id}").get_data(
        as_text=True
    )

    assert prompts(failed) == ["broken"]
    assert "The model is down" in failed and "1 credit refunded" in failed
    assert prompts(in_flow) == ["kept"] and other.prompt not in prompts(in_flow)


def test_load_more_appends_the_next_page_when_revealed(signed_in, user, project):
    for minutes in range(22, 0, -1):
        make(project, user, f"step {minutes:02d}", minutes)

    first = signed_in.get(f"/projects/{project.id}/history?q=step").get_data(as_text=True)
    more = re.search(r'<li class="load-more" hx-get="([^"]+)" hx-trigger="revealed"', first)
    assert more and len(prompts(first)) == 20
    next_url = more.group(1).replace("&amp;", "&")
    assert parse_qs(urlparse(next_url).query)["offset"] == ["20"]

    rows = signed_in.get(next_url, headers=HX).get_data(as_text=True)

    assert prompts(rows) == ["step 21", "step 22"]
    assert rows.lstrip().startswith('<li class="history-row"')
    assert "load-more" not in rows


def test_use_again_links_to_the_canvas_with_the_request(signed_in, user, project):
    image = factories.make_image(project, alias="@hero")
    generation = make(
        project, user, "a vase like @hero", 1, seed=5, aspectRatio="3:4", referenceImages=["@hero"]
    )

    html = signed_in.get(f"/projects/{project.id}/history").get_data(as_text=True)

    (href,) = [url for url, text in links(html) if text.endswith("Use again")]
    query = parse_qs(urlparse(href).query)
    assert query["prompt"] == ["a vase like @hero"] and query["aspect_ratio"] == ["3:4"]
    assert query["seed"] == ["5"] and query["flow_id"] == [generation.flow_id]
    assert query["ref"] == ["@hero"]
    panel = signed_in.get(href).get_data(as_text=True)
    assert re.search(r">\s*a vase like @hero</textarea>", panel)
    assert re.search(r'value="@hero" checked', panel) and image.id in panel


def test_running_rows_refresh_themselves_until_done(signed_in, user, project):
    running = factories.make_generation(project, user, "slow one", run=False)

    html = signed_in.get(f"/projects/{project.id}/history").get_data(as_text=True)
    assert 'view=row" hx-trigger="every 1s"' in html

    generations.run(running.id)
    row = signed_in.get(f"/projects/{project.id}/generations/{running.id}?view=row", headers=HX)
    assert row.status_code == 286
    assert row.get_data(as_text=True).lstrip().startswith('<li class="history-row"')
    assert "every 1s" not in row.get_data(as_text=True)


def test_bulk_delete_removes_the_selected_generations(signed_in, user, project):
    doomed = [make(project, user, f"doomed {n}", n) for n in (3, 2)]
    kept = make(project, user, "kept", 1)

    response = factories.post_form(
        signed_in,
        f"/projects/{project.id}/history/bulk",
        {"action": "delete", "ids": [g.id for g in doomed]},
    )

    assert response.status_code == 303
    page = signed_in.get(response.headers["Location"]).get_data(as_text=True)
    assert "Deleted 2 generations." in page
    assert prompts(page) == [kept.prompt]


def test_bulk_download_is_a_zip_of_the_selected_images(signed_in, user, project):
    chosen = [make(project, user, f"pick {n}", n) for n in (2, 1)]
    make(project, user, "not me", 0)

    response = factories.post_form(
        signed_in,
        f"/projects/{project.id}/history/bulk",
        {"action": "download", "ids": [g.id for g in chosen]},
    )

    assert response.status_code == 200 and response.mimetype == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(response.get_data())).namelist()
    assert names == [f"001-{chosen[0].output_image_id}.png", f"002-{chosen[1].output_image_id}.png"]


def test_bulk_with_nothing_selected_explains(signed_in, project):
    response = factories.post_form(
        signed_in, f"/projects/{project.id}/history/bulk", {"action": "delete"}
    )

    assert "Select at least one generation" in signed_in.get(response.headers["Location"]).get_data(
        as_text=True
    )


class TestAnotherUsersProject:
    @pytest.fixture
    def theirs(self, app):
        owner = factories.make_user("someone-else@example.com")
        project = factories.first_project(owner)
        return project, factories.make_generation(project, owner, "their secret")

    def test_history_is_404(self, signed_in, theirs):
        project, _ = theirs
        assert signed_in.get(f"/projects/{project.id}/history").status_code == 404
        assert signed_in.get(f"/projects/{project.id}/history", headers=HX).status_code == 404

    def test_their_generations_cannot_be_bulk_deleted_from_my_project(
        self, signed_in, project, theirs
    ):
        _, generation = theirs

        response = factories.post_form(
            signed_in,
            f"/projects/{project.id}/history/bulk",
            {"action": "delete", "ids": [generation.id]},
        )

        assert response.status_code == 404
        assert generations.get_generation(generation.project_id, generation.id).deleted_at is None
