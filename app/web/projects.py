"""The projects list and the pages of one project (`/projects/<project_id>/…`)."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, url_for
from flask_login import current_user, login_required

from app.errors import Invalid
from app.services import projects
from app.web.forms import ProjectForm
from app.web.rendering import is_fragment_request, redirect_to, render_page

bp = Blueprint("projects", __name__)


@bp.get("/")
def home():
    if current_user.is_authenticated:
        return redirect(url_for("projects.index"))
    return redirect(url_for("auth.login"))


# The list ---------------------------------------------------------------------------------


@bp.get("/projects")
@login_required
def index():
    return render_page(
        "projects/index.html",
        "projects/_grid.html",
        summaries=projects.summaries(current_user),
        form=ProjectForm(formdata=None),
    )


@bp.get("/projects/new")
@login_required
def new():
    """The create form as a page (the list opens it in a dialog when scripts run)."""
    return render_page("projects/new.html", form=ProjectForm(formdata=None))


@bp.post("/projects")
@login_required
def create():
    form = ProjectForm()
    if form.validate_on_submit():
        try:
            project = projects.create_project(current_user, form.name.data)
        except Invalid as exc:
            form.name.errors.append(exc.message)
        else:
            flash(f"Created “{project.name}”.", "success")
            return redirect_to(url_for("projects.canvas", project_id=project.id))
    return render_page("projects/new.html", "projects/_create_form.html", form=form, status=422)


@bp.route("/projects/<project_id>/rename", methods=["GET", "POST"])
@login_required
def rename(project_id: str):
    """Inline rename: htmx swaps the project's card for its edit mode and back."""
    project = projects.get_project(current_user, project_id)
    form = ProjectForm(data={"name": project.name})
    if form.validate_on_submit():
        try:
            projects.rename_project(project, form.name.data)
        except Invalid as exc:
            form.name.errors.append(exc.message)
        else:
            if not is_fragment_request():
                flash(f"Renamed to “{project.name}”.", "success")
                return redirect_to(url_for("projects.index"))
            (summary,) = projects.summarise([project])
            return render_page("projects/_card.html", summary=summary)
    (summary,) = projects.summarise([project])
    return render_page(
        "projects/rename.html",
        "projects/_card.html",
        project=project,
        summary=summary,
        form=form,
        editing=True,
        status=422 if form.errors else 200,
    )


@bp.post("/projects/<project_id>/delete")
@login_required
def delete(project_id: str):
    project = projects.get_project(current_user, project_id)
    name = project.name
    try:
        projects.delete_project(project)
    except Invalid as exc:  # the last project stays; say why on the list
        flash(exc.message, "error")
    else:
        flash(f"Deleted “{name}”.", "success")
    return redirect_to(url_for("projects.index"))
