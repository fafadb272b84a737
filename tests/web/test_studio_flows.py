"""The flows pages: the list with counts and covers, a flow's timeline, aliases and compare view."""

from __future__ import annotations

import re

import pytest

from app.services import aliases, flows
from tests import factories

HX = {"HX-Request": "true"}


@pytest.fixture
def signed_in(client, auth, user):
    auth.login(user.email)
    return client


@pytest.fixture
def chain(user, project):
    """A flow of three steps: a generation, an upload, a generation that used the first."""
    first = factories.make_generation(project, user, "a plain vase")
    upload = factories.make_image(
        project, source="uploaded", flow=flows.get_flow(project.id, first.flow_id)
    )
    last = factories.make_generation(
        project, user, "the vase in blue", flowId=first.flow_id, referenceImages=["@last"]
    )
    return first, upload, last


def test_flows_list_shows_counts_cover_and_aliases(signed_in, project, chain):
    first, _, last = chain
    flow = flows.get_flow(project.id, first.flow_id)
    flows.merge_aliases(project.id, flow, {"@base": first.output_image_id})

    response = signed_in.get(f"/projects/{project.id}/flows")

    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "2 generations · 3 images" in html
    assert f'href="/projects/{project.id}/flows/{flow.id}"' in html
    assert f'src="/i/{last.output_image_id}/thumb.webp"' in html  # the newest image is the cover
    assert ">@base<" in html


def test_no_flows_yet_says_how_they_start(signed_in, project):
    html = signed_in.get(f"/projects/{project.id}/flows").get_data(as_text=True)

    assert "No flows yet" in html


def test_flow_page_shows_the_chain_as_a_timeline(signed_in, project, chain):
    first, upload, last = chain

    html = signed_in.get(f"/projects/{project.id}/flows/{first.flow_id}").get_data(as_text=True)

    steps = re.findall(r'<p class="timeline__step-no">(Step \d+ · \w+)</p>', html)
    assert steps == ["Step 1 · Generated", "Step 2 · Uploaded", "Step 3 · Generated"]
    timeline = html[html.index('<ol class="timeline">') :]
    assert timeline.index("a plain vase") < timeline.index(upload.id)
    assert timeline.index(upload.id) < timeline.index("the vase in blue")
    assert re.search(r"Used</span><span[^>]*>@last</span>", html)


def test_compare_view_defaults_to_the_last_two_steps(signed_in, project, chain):
    _, upload, last = chain

    html = signed_in.get(f"/projects/{project.id}/flows/{last.flow_id}").get_data(as_text=True)

    assert re.search(rf'compare__side--a" data-compare-top>\s*<img src="/i/{upload.id}\.png"', html)
    assert re.search(rf'compare__side--b">\s*<img src="/i/{last.output_image_id}\.png"', html)
    assert 'type="range"' in html and 'aria-label="Compare slider' in html


def test_choosing_two_steps_swaps_the_compare_view_alone(signed_in, project, chain):
    first, _, last = chain
    path = (
        f"/projects/{project.id}/flows/{first.flow_id}"
        f"?a={first.output_image_id}&b={last.output_image_id}"
    )

    fragment = signed_in.get(path, headers=HX)
    full = signed_in.get(path)

    html = fragment.get_data(as_text=True)
    assert html.lstrip().startswith('<div class="compare" id="compare"') and "<html" not in html
    top = rf'compare__side--a" data-compare-top>\s*<img src="/i/{first.output_image_id}\.png"'
    assert re.search(top, html)
    assert "<html" in full.get_data(as_text=True) and "Timeline" in full.get_data(as_text=True)


def test_a_flow_with_one_image_explains_the_compare_view(signed_in, user, project):
    single = factories.make_generation(project, user)

    html = signed_in.get(f"/projects/{project.id}/flows/{single.flow_id}").get_data(as_text=True)

    assert "A flow needs two images to compare" in html


class TestAliases:
    def test_add_an_alias_inline(self, signed_in, project, chain):
        first, _, _ = chain

        response = factories.post_form(
            signed_in,
            f"/projects/{project.id}/flows/{first.flow_id}/aliases",
            {"alias": "@base", "image_id": first.output_image_id},
            HX,
        )

        html = response.get_data(as_text=True)
        assert response.status_code == 200 and html.lstrip().startswith(
            '<section class="card" id="flow-aliases"'
        )
        assert 'title="@base">@base</span>' in html
        found = aliases.resolve(project.id, "@base", first.flow_id)
        assert found.scope == "flow" and found.image.id == first.output_image_id

    def test_point_an_alias_at_another_step(self, signed_in, project, chain):
        first, _, last = chain
        flow = flows.get_flow(project.id, first.flow_id)
        flows.merge_aliases(project.id, flow, {"@pick": first.output_image_id})

        factories.post_form(
            signed_in,
            f"/projects/{project.id}/flows/{flow.id}/aliases",
            {"alias": "@pick", "image_id": last.output_image_id},
            HX,
        )

        assert flows.alias_map(flow.id) == {"@pick": last.output_image_id}

    def test_remove_an_alias_inline(self, signed_in, project, chain):
        first, _, _ = chain
        flow = flows.get_flow(project.id, first.flow_id)
        flows.merge_aliases(project.id, flow, {"@gone": first.output_image_id})

        response = factories.post_form(
            signed_in,
            f"/projects/{project.id}/flows/{flow.id}/aliases/remove",
            {"alias": "@gone"},
            HX,
        )

        assert "No flow aliases yet." in response.get_data(as_text=True)
        assert flows.alias_map(flow.id) == {}

    def test_an_invalid_alias_is_shown_next_to_the_field(self, signed_in, project, chain):
        first, _, _ = chain

        response = factories.post_form(
            signed_in,
            f"/projects/{project.id}/flows/{first.flow_id}/aliases",
            {"alias": "no-at-sign", "image_id": first.output_image_id},
            HX,
        )

        assert response.status_code == 422
        html = response.get_data(as_text=True)
        assert re.search(r'id="new-flow-alias-error".*?Alias must be @', html, re.S)

    def test_without_scripts_the_alias_form_redirects_back(self, signed_in, project, chain):
        first, _, _ = chain

        response = factories.post_form(
            signed_in,
            f"/projects/{project.id}/flows/{first.flow_id}/aliases",
            {"alias": "@base", "image_id": first.output_image_id},
        )

        assert response.status_code == 303
        assert response.headers["Location"] == f"/projects/{project.id}/flows/{first.flow_id}"


def test_deleting_a_flow_keeps_its_images(signed_in, project, chain):
    first, upload, _ = chain

    response = factories.post_form(
        signed_in, f"/projects/{project.id}/flows/{first.flow_id}/delete"
    )

    assert response.headers["Location"] == f"/projects/{project.id}/flows"
    assert signed_in.get(f"/projects/{project.id}/flows/{first.flow_id}").status_code == 404
    assert f"/i/{upload.id}/thumb.webp" in signed_in.get(f"/projects/{project.id}/images").get_data(
        as_text=True
    )


class TestAnotherUsersProject:
    @pytest.fixture
    def their_flow(self, app):
        owner = factories.make_user("someone-else@example.com")
        project = factories.first_project(owner)
        return factories.make_generation(project, owner)

    def test_their_flow_is_404_from_my_project_and_theirs(self, signed_in, project, their_flow):
        for project_id in (project.id, their_flow.project_id):
            path = f"/projects/{project_id}/flows/{their_flow.flow_id}"
            assert signed_in.get(path).status_code == 404
            assert signed_in.get(path, headers=HX).status_code == 404
        assert signed_in.get(f"/projects/{their_flow.project_id}/flows").status_code == 404

    def test_their_flow_aliases_cannot_be_changed(self, signed_in, project, their_flow):
        response = factories.post_form(
            signed_in,
            f"/projects/{project.id}/flows/{their_flow.flow_id}/aliases",
            {"alias": "@x", "image_id": their_flow.output_image_id},
            HX,
        )

        assert response.status_code == 404
        assert flows.alias_map(their_flow.flow_id) == {}

    def test_my_flow_cannot_alias_their_image(self, signed_in, user, project, their_flow):
        mine = factories.make_generation(project, user)

        response = factories.post_form(
            signed_in,
            f"/projects/{project.id}/flows/{mine.flow_id}/aliases",
            {"alias": "@theirs", "image_id": their_flow.output_image_id},
            HX,
        )

        assert response.status_code == 422
        assert "Image not found" in response.get_data(as_text=True)
        assert flows.alias_map(mine.flow_id) == {}
