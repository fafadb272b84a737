"""The command line of API.md §11: user create, apikey create, seed-demo."""

from __future__ import annotations

from app.services import accounts, api_keys, projects, seed


def test_user_create_makes_an_account_with_a_default_project(runner):
    result = runner.invoke(
        args=["user", "create", "cli@example.com", "--password", "long enough pw", "--tier", "pro"]
    )

    assert result.exit_code == 0, result.output
    user = accounts.authenticate("cli@example.com", "long enough pw")
    assert user.tier == "pro" and not user.is_admin
    assert [p.name for p in projects.list_projects(user)] == ["My first project"]


def test_user_create_admin_and_duplicate(runner):
    first = runner.invoke(
        args=["user", "create", "boss@example.com", "--password", "pw-long-1", "--admin"]
    )
    again = runner.invoke(args=["user", "create", "boss@example.com", "--password", "pw-long-2"])

    assert first.exit_code == 0
    assert accounts.get_by_email("boss@example.com").is_admin
    assert again.exit_code != 0
    assert "already exists" in again.output


def test_apikey_create_prints_the_key_alone_on_the_last_line_and_it_works(app, runner, user):
    projects.create_project(user, "Second")

    result = runner.invoke(
        args=["apikey", "create", user.email, "--project", "Second", "--name", "Deploy"]
    )

    assert result.exit_code == 0, result.output
    key = result.output.strip().splitlines()[-1]
    assert key.startswith("pk_") and " " not in key
    response = app.test_client().get("/api/v1/project", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200
    assert response.get_json()["data"]["name"] == "Second"
    assert api_keys.get_key(user, api_keys.authenticate(key).key_id).name == "Deploy"


def test_apikey_create_for_an_unknown_user_or_project_fails(runner, user):
    assert runner.invoke(args=["apikey", "create", "ghost@example.com"]).exit_code != 0
    result = runner.invoke(args=["apikey", "create", user.email, "--project", "Nope"])
    assert result.exit_code != 0
    assert "no project named" in result.output


def test_seed_demo_is_idempotent(runner):
    first = runner.invoke(args=["seed-demo"])
    second = runner.invoke(args=["seed-demo"])

    assert first.exit_code == 0 and second.exit_code == 0
    assert "created" in first.output and "already present" in second.output
    demo = accounts.authenticate(seed.DEMO_EMAIL, seed.DEMO_PASSWORD)
    assert len(projects.list_projects(demo)) == 1
