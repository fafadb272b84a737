"""The studio: a project's canvas, history, flows, images and settings (issue 5).

Views parse the form, call one service (the same functions the JSON API calls), and render a
page or, for htmx requests, the fragment that changed. The canvas page is served on the
`projects` blueprint (`projects.canvas`, linked from the projects list); everything else is on
the `studio` blueprint under /projects/<project_id>/.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, current_app, flash, redirect, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from werkzeug.datastructures import MultiDict
from wtforms import (
    BooleanField,
    IntegerField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.validators import NumberRange, Optional

from app.api.serializers import external_url
from app.errors import DomainError
from app.models import STATUSES, Flow, Generation, Image, Project
from app.providers import ASPECT_RATIOS, TEMPLATES
from app.services import canvas, flows, generations, images, live, projects
from app.services.listing import Page, fetch_page
from app.storage import get_storage
from app.web.projects import bp as projects_bp
from app.web.rendering import is_fragment_request, render_page

bp = Blueprint("studio", __name__, url_prefix="/projects/<project_id>")

BOARD_LIMIT = 60
HISTORY_PAGE = 20
LIBRARY_PAGE = 30
FLOWS_PAGE = 24
REFERENCE_CHOICES = 24
FLOW_CHOICES = 50
TIMELINE_LIMIT = 100


class StudioForm(FlaskForm):
    """Forms here only parse; the rules live in the services and CSRF is enforced for every
    write by app.security (htmx sends the header, plain forms the hidden field)."""

    class Meta:
        csrf = False


class GenerateForm(StudioForm):
    prompt = TextAreaField("Prompt")
    aspect_ratio = SelectField(
        "Aspect ratio", choices=[SelectChoice(r) for r in ASPECT_RATIOS], validate_choice=False
    )
    seed = IntegerField("Seed", validators=[Optional()])
    flow_id = SelectField("Flow", choices=[], validate_choice=False)
    references = SelectMultipleField("References", choices=[], validate_choice=False)
    negative_prompt = TextAreaField(
        "Avoid", description="A negative prompt: what the image should not contain."
    )
    template = SelectField(
        "Style template",
        choices=[SelectChoice("", "None")] + [SelectChoice(t, t.capitalize()) for t in TEMPLATES],
        validate_choice=False,
        description="Used by auto-enhance.",
    )
    model = SelectField("Model", choices=[], validate_choice=False)
    auto_enhance = BooleanField(
        "Auto-enhance",
        description="A text model rewrites your words first, in the template's style.",
    )
    alias = StringField(
        "Alias for the result", description="A project alias such as @hero, to reuse the image."
    )


class DefaultsForm(StudioForm):
    default_aspect_ratio = SelectField(
        "Default aspect ratio",
        choices=[SelectChoice(r) for r in ASPECT_RATIOS],
        validate_choice=False,
    )
    default_model = SelectField("Default model", choices=[], validate_choice=False)


class LiveForm(StudioForm):
    live_allowed_origins = TextAreaField(
        "Allowed origins",
        description="One host per line (example.com). Empty allows every site.",
    )
    live_daily_limit = IntegerField(
        "Daily limit",
        validators=[Optional(), NumberRange(min=0, message="Must be 0 or more")],
        description="New images per day through the live URL. Empty means no limit.",
    )


# Where a service's validation error goes in the generate form (detail key or error code).
GENERATE_FIELDS = {
    "prompt": "prompt",
    "PROMPT_REQUIRED": "prompt",
    "aspectRatio": "aspect_ratio",
    "INVALID_ASPECT_RATIO": "aspect_ratio",
    "seed": "seed",
    "negativePrompt": "negative_prompt",
    "template": "template",
    "INVALID_TEMPLATE": "template",
    "model": "model",
    "TIER_RESTRICTED": "model",
    "flowId": "flow_id",
    "FLOW_NOT_FOUND": "flow_id",
    "reference": "references",
    "referenceImages": "references",
    "TOO_MANY_REFERENCES": "references",
    "IMAGE_NOT_FOUND": "references",
    "FILE_TOO_LARGE": "references",
    "UNSUPPORTED_MEDIA_TYPE": "references",
    "alias": "alias",
    "ALIAS_EXISTS": "alias",
    "INVALID_ALIAS": "alias",
    "RESERVED_ALIAS": "alias",
}


@dataclass(frozen=True)
class BoardItem:
    """A card on the board: a generation (with its output once there) or an uploaded image."""

    generation: Generation | None
    image: Image | None
    deleted: bool = False

    @property
    def key(self) -> str:
        """Stable across the card's life, so its place on the board is kept."""
        if self.generation is not None:
            return f"g:{self.generation.id}"
        return f"i:{self.image.id}"

    @property
    def dom_id(self) -> str:
        return self.key.replace(":", "-")

    @property
    def flow_id(self) -> str | None:
        return self.generation.flow_id if self.generation else self.image.flow_id

    @property
    def flow_label(self) -> str:
        text = self.generation.prompt if self.generation else (self.image.alias or "Upload")
        return text if len(text) <= 40 else text[:39].rstrip() + "…"


@dataclass(frozen=True)
class ReferenceOption:
    image: Image
    checked: bool

    @property
    def value(self) -> str:
        return self.image.alias or self.image.id

    @property
    def label(self) -> str:
        return (
            self.image.alias
            or f"{self.image.source.capitalize()} {self.image.created_at:%d %b %H:%M}"
        )


# --- helpers ------------------------------------------------------------------------------


def _project(project_id: str) -> Project:
    return projects.get_project(current_user, project_id)


def _page(template: str, fragment: str | None, project: Project, **context: Any) -> Response:
    return render_page(template, fragment, project=project, active_page="projects", **context)


def _trigger(response: Response, **events: Any) -> Response:
    """Add client events to HX-Trigger (toasts, credits-changed, …), keeping any already set."""
    existing = response.headers.get("HX-Trigger")
    merged = json.loads(existing) if existing else {}
    merged.update(events)
    response.headers["HX-Trigger"] = json.dumps(merged)
    return response


def _toast(message: str, level: str = "success") -> dict[str, str]:
    return {"message": message, "level": level}


def _field_errors(form: FlaskForm, exc: DomainError, fields: dict[str, str]) -> bool:
    """Put a service's validation error next to the field it concerns; False when none does.

    `fields` maps a `details` key or an error code to a form field name.
    """
    placed = set()
    for key, detail in (exc.details or {}).items():
        name = fields.get(key)
        if name and name not in placed and hasattr(form, name):
            named = key == "reference" or len(exc.details or {}) > 1
            getattr(form, name).errors.append(f"{exc.message}: {detail}" if named else exc.message)
            placed.add(name)
    if not placed and fields.get(exc.code) and hasattr(form, fields[exc.code]):
        getattr(form, fields[exc.code]).errors.append(exc.message)
        placed.add(fields[exc.code])
    return bool(placed)


def _model_choices() -> list[SelectChoice]:
    return [SelectChoice("", "Deployment default")] + [
        SelectChoice(m.id) for m in generations.models()
    ]


def use_again_args(gen: Generation) -> dict[str, Any]:
    """Query parameters that refill the prompt panel with a generation's request."""
    args: dict[str, Any] = {"prompt": gen.prompt, "aspect_ratio": gen.aspect_ratio}
    if gen.negative_prompt:
        args["negative_prompt"] = gen.negative_prompt
    if gen.seed is not None:
        args["seed"] = gen.seed
    if gen.template:
        args["template"] = gen.template
    if gen.auto_enhance:
        args["auto_enhance"] = "y"
    if gen.flow_id:
        args["flow_id"] = gen.flow_id
    if gen.reference_inputs:
        args["ref"] = list(gen.reference_inputs)
    return args


@bp.context_processor
def studio_helpers() -> dict[str, Any]:
    return {"use_again_args": use_again_args}


# --- canvas and generations -------------------------------------------------------------


def _generation(project: Project, generation_id: str) -> Generation:
    return generations.get_generation(project.id, generation_id)


def _alive_outputs(gens: list[Generation]) -> dict[str, Image]:
    """generation id → output image, leaving out deleted images."""
    outputs = generations.output_images(gens)
    return {gid: image for gid, image in outputs.items() if image.deleted_at is None}


def _output(gen: Generation) -> Image | None:
    return _alive_outputs([gen]).get(gen.id)


def _board(project: Project) -> list[BoardItem]:
    """The newest generations and uploads, newest first. A finished generation whose image was
    deleted is not on the board any more."""
    recent, _ = generations.list_generations(project.id, limit=BOARD_LIMIT, offset=0)
    outputs = _alive_outputs(recent)
    items = [
        BoardItem(gen, outputs.get(gen.id))
        for gen in recent
        if gen.status != "success" or gen.id in outputs
    ]
    uploads = images.list_images(project.id, limit=BOARD_LIMIT, offset=0, source="uploaded")
    items += [BoardItem(None, image) for image in uploads.items]
    items.sort(key=lambda item: (item.generation or item.image).created_at, reverse=True)
    return items


def _board_item(project: Project, image: Image, *, deleted: bool = False) -> BoardItem:
    gen = _generation(project, image.generation_id) if image.generation_id else None
    return BoardItem(gen, image, deleted=deleted)


def _flow_choices(project: Project) -> list[tuple[str, str]]:
    recent = flows.list_flows(project.id, limit=FLOW_CHOICES, offset=0).items
    info = flows.summaries(recent)
    choices = [("", "New flow")]
    for flow in recent:
        summary = info[flow.id]
        count = summary.image_count
        label = f"{flow.created_at:%d %b, %H:%M} · {count} image{'' if count == 1 else 's'}"
        if summary.aliases:
            label += " · " + " ".join(list(summary.aliases)[:3])
        choices.append((flow.id, label))
    return choices


def _generate_form(project: Project, formdata: MultiDict | None) -> GenerateForm:
    form = GenerateForm(
        formdata=formdata,
        aspect_ratio=project.default_aspect_ratio,
        model=project.default_model or "",
        template="",
    )
    form.flow_id.choices = [SelectChoice(value, label) for value, label in _flow_choices(project)]
    form.model.choices = _model_choices()
    return form


def _reference_options(project: Project, checked: list[str]) -> list[ReferenceOption]:
    """The newest images, plus any checked one that is older; checked ones first."""
    recent = images.list_images(project.id, limit=REFERENCE_CHOICES, offset=0).items
    known = {image.id for image in recent}
    for ref in checked:
        if ref not in known and not ref.startswith("@"):
            try:
                recent.append(images.get_image(project.id, ref))
            except DomainError:
                continue
            known.add(ref)
    options = [ReferenceOption(i, i.id in checked or (i.alias or "") in checked) for i in recent]
    return sorted(options, key=lambda option: not option.checked)


def _panel_context(
    project: Project, form: GenerateForm, form_error: str | None = None
) -> dict[str, Any]:
    return {
        "form": form,
        "form_error": form_error,
        "references": _reference_options(project, list(form.references.data or [])),
        "cost": current_app.config["CREDITS_PER_GENERATION"],
    }


def _render_canvas(
    project: Project, form: GenerateForm, *, form_error: str | None = None, status: int = 200
) -> Response:
    """The canvas page; for htmx requests only the prompt panel (refilled or with errors)."""
    context = _panel_context(project, form, form_error)
    if is_fragment_request():
        response = render_page(
            "studio/_prompt_panel.html", project=project, status=status, **context
        )
        if status >= 400:
            response.headers["HX-Retarget"] = "#prompt-panel"
            response.headers["HX-Reswap"] = "outerHTML"
        return response
    return _page(
        "studio/canvas.html",
        None,
        project,
        status=status,
        board=_board(project),
        canvas=canvas.get_canvas(project.id),
        **context,
    )


PREFILL_KEYS = {
    "prompt",
    "negative_prompt",
    "aspect_ratio",
    "seed",
    "template",
    "auto_enhance",
    "model",
    "flow_id",
    "references",
}


@projects_bp.get("/projects/<project_id>", endpoint="canvas")
@login_required
def canvas_page(project_id: str):
    """The canvas. Query parameters prefill the prompt panel ("use again", "continue flow"):
    prompt, negative_prompt, aspect_ratio, seed, template, auto_enhance, model, flow_id, ref."""
    project = _project(project_id)
    args = MultiDict(request.args)
    for ref in request.args.getlist("ref"):
        args.add("references", ref)
    prefill = args if PREFILL_KEYS & set(args) else None
    return _render_canvas(project, _generate_form(project, prefill))


def _generation_payload(form: GenerateForm, references: list[str]) -> dict[str, Any]:
    """The generate form as the API's request body (API.md §4): one shape for both doors."""
    payload: dict[str, Any] = {
        "prompt": form.prompt.data or "",
        "aspectRatio": form.aspect_ratio.data,
        "referenceImages": references,
        "autoEnhance": bool(form.auto_enhance.data),
    }
    optional = {
        "negativePrompt": (form.negative_prompt.data or "").strip(),
        "flowId": form.flow_id.data,
        "template": form.template.data,
        "model": form.model.data,
        "alias": (form.alias.data or "").strip(),
    }
    payload.update({key: value for key, value in optional.items() if value})
    if form.seed.data is not None:
        payload["seed"] = form.seed.data
    return payload


@bp.post("/generations")
@login_required
def create_generation(project_id: str):
    project = _project(project_id)
    form = _generate_form(project, request.form)
    form.validate()  # parses the seed; every other rule is the service's
    if form.errors:
        return _render_canvas(project, form, status=422)
    references = list(form.references.data or [])
    try:
        upload = request.files.get("reference_file")
        if upload and upload.filename:  # the no-script way to add a reference: upload it first
            references.append(images.upload(project.id, upload.read()).id)
            form.references.data = references
        gen, _ = generations.create(project, current_user, _generation_payload(form, references))
    except DomainError as exc:
        form_error = None if _field_errors(form, exc, GENERATE_FIELDS) else exc.message
        return _render_canvas(project, form, form_error=form_error, status=422)
    if not is_fragment_request():
        flash("Generation started: it appears on the board when it is ready.", "success")
        return redirect(url_for("projects.canvas", project_id=project.id), code=303)
    response = render_page(
        "studio/_board_card.html", project=project, item=BoardItem(gen, None), status=201
    )
    return _trigger(response, **{"credits-changed": {"balance": current_user.credits_balance}})


@bp.get("/generations/<generation_id>")
@login_required
def generation(project_id: str, generation_id: str):
    """A generation's page; for htmx its card (`view=board`) or history row (`view=row`).
    Cards of running generations poll this every second: a finished one answers 286, which
    stops the polling, with the events that update the credits and notify a hidden tab."""
    project = _project(project_id)
    gen = _generation(project, generation_id)
    output = _output(gen)
    if not is_fragment_request():
        return _page("studio/generation.html", None, project, gen=gen, output=output)
    if request.args.get("view") == "row":
        response = render_page("studio/_history_row.html", project=project, gen=gen, output=output)
    else:
        item = BoardItem(gen, output)
        response = render_page("studio/_board_card.html", project=project, item=item)
    if gen.is_terminal:
        response.status_code = 286
        finished = {
            "id": gen.id,
            "status": gen.status,
            "prompt": gen.prompt,
            "thumbnail": url_for("media.image_thumbnail", image_id=output.id) if output else None,
        }
        _trigger(
            response,
            **{
                "generation-finished": finished,
                "credits-changed": {"balance": current_user.credits_balance},
            },
        )
    return response


def _card_response(project: Project, gen: Generation, *, status: int = 200) -> Response:
    """After an action on a generation: its board card or history row (per `view`)."""
    output = _output(gen)
    if request.form.get("view") == "row" or request.args.get("view") == "row":
        return render_page(
            "studio/_history_row.html", project=project, gen=gen, output=output, status=status
        )
    return render_page(
        "studio/_board_card.html", project=project, item=BoardItem(gen, output), status=status
    )


@bp.post("/generations/<generation_id>/regenerate")
@login_required
def regenerate(project_id: str, generation_id: str):
    project = _project(project_id)
    gen = generations.regenerate(project, current_user, generation_id)
    if not is_fragment_request():
        flash("Generating again: the new image appears on the board.", "success")
        return redirect(url_for("projects.canvas", project_id=project.id), code=303)
    response = _card_response(project, gen, status=201)
    return _trigger(response, **{"credits-changed": {"balance": current_user.credits_balance}})


@bp.post("/generations/<generation_id>/cancel")
@login_required
def cancel_generation(project_id: str, generation_id: str):
    project = _project(project_id)
    gen = generations.cancel(project.id, generation_id)
    if not is_fragment_request():
        flash("Generation cancelled and refunded.", "success")
        target = request.referrer or url_for("studio.history", project_id=project.id)
        return redirect(target, code=303)
    response = _card_response(project, gen)
    return _trigger(response, **{"credits-changed": {"balance": current_user.credits_balance}})


@bp.post("/generations/<generation_id>/delete")
@login_required
def delete_generation(project_id: str, generation_id: str):
    project = _project(project_id)
    generations.delete(project.id, generation_id)
    if not is_fragment_request():
        flash("Generation deleted.", "success")
        return redirect(url_for("studio.history", project_id=project.id), code=303)
    return _trigger(Response("", 200), toast=_toast("Generation deleted"))


# --- history ------------------------------------------------------------------------------


def _history_filters() -> dict[str, str | None]:
    return {
        "q": (request.args.get("q") or "").strip() or None,
        "status": request.args.get("status") or None,
        "flow_id": request.args.get("flow_id") or None,
    }


@bp.get("/history")
@login_required
def history(project_id: str):
    """Every generation, newest first; htmx gets the results (filters) or the next rows."""
    project = _project(project_id)
    filters = _history_filters()
    offset = _offset()
    rows, total = generations.list_generations(
        project.id, limit=HISTORY_PAGE, offset=offset, **filters
    )
    found = Page(rows, total, offset + len(rows) < total)
    fragment = "studio/_history_rows.html" if offset else "studio/_history_results.html"
    return _page(
        "studio/history.html",
        fragment,
        project,
        filters=filters,
        found=found,
        outputs=_alive_outputs(found.items),
        offset=offset,
        limit=HISTORY_PAGE,
        statuses=STATUSES,
        flow_choices=_flow_choices(project)[1:],
    )


@bp.post("/history/bulk")
@login_required
def history_bulk(project_id: str):
    """Selected generations: delete them, or download their images as one ZIP."""
    project = _project(project_id)
    chosen = [_generation(project, gid) for gid in request.form.getlist("ids")]
    back = url_for("studio.history", project_id=project.id)
    if not chosen:
        flash("Select at least one generation first.", "warning")
        return redirect(back, code=303)
    if request.form.get("action") == "download":
        outputs = _alive_outputs(chosen)
        entries = [
            (flows.archive_name(index, image, {}), image.storage_key, image.created_at)
            for index, image in enumerate(
                (outputs[g.id] for g in chosen if g.id in outputs), start=1
            )
        ]
        # The streaming ZIP writer behind the flow download, fed with this selection.
        archive = flows._zip_stream(entries, get_storage())
        return Response(
            archive,
            mimetype="application/zip",
            headers={"Content-Disposition": 'attachment; filename="pictor-selection.zip"'},
        )
    for gen in chosen:
        generations.delete(project.id, gen.id)
    count = len(chosen)
    flash(f"Deleted {count} generation{'' if count == 1 else 's'}.", "success")
    return redirect(back, code=303)


def _offset() -> int:
    try:
        return max(int(request.args.get("offset") or 0), 0)
    except ValueError:
        return 0


# --- flows --------------------------------------------------------------------------------


def _flow_title(flow: Flow) -> str:
    """A flow is named after its first prompt, else after its first upload."""
    first, _ = flows.flow_generations(flow, limit=1, offset=0)
    if first.items:
        return first.items[0].prompt
    found = flows.flow_images(flow, limit=1, offset=0).items
    return (found[0].alias or "Uploaded image") if found else "Empty flow"


@bp.get("/flows")
@login_required
def flow_list(project_id: str):
    project = _project(project_id)
    offset = _offset()
    found = flows.list_flows(project.id, limit=FLOWS_PAGE, offset=offset)
    covers = {}
    for flow in found.items:
        newest = images.list_images(project.id, limit=1, offset=0, flow_id=flow.id).items
        covers[flow.id] = newest[0] if newest else None
    return _page(
        "studio/flows.html",
        None,
        project,
        found=found,
        summaries=flows.summaries(found.items),
        covers=covers,
        titles={flow.id: _flow_title(flow) for flow in found.items},
        offset=offset,
        limit=FLOWS_PAGE,
    )


@dataclass(frozen=True)
class Step:
    """One step of a flow's timeline: a generation (and its output) or an upload."""

    generation: Generation | None
    image: Image | None

    @property
    def created_at(self) -> datetime:
        return (self.generation or self.image).created_at


def _timeline(flow: Flow) -> tuple[list[Step], list[Image]]:
    found, outputs = flows.flow_generations(flow, limit=TIMELINE_LIMIT, offset=0)
    flow_images = flows.flow_images(flow, limit=TIMELINE_LIMIT, offset=0).items
    steps = [Step(gen, outputs.get(gen.output_image_id or "")) for gen in found.items]
    steps += [Step(None, image) for image in flow_images if image.source == "uploaded"]
    steps.sort(key=lambda step: step.created_at)
    return steps, flow_images


def _compare_pair(flow_images: list[Image]) -> tuple[Image | None, Image | None]:
    by_id = {image.id: image for image in flow_images}
    a = by_id.get(request.args.get("a") or "")
    b = by_id.get(request.args.get("b") or "")
    if len(flow_images) >= 2:
        a = a or flow_images[-2]
        b = b or flow_images[-1]
    return a, b


@bp.get("/flows/<flow_id>")
@login_required
def flow(project_id: str, flow_id: str):
    """A flow: timeline, aliases and the compare view; htmx gets the compare view alone."""
    project = _project(project_id)
    the_flow = flows.get_flow(project.id, flow_id)
    steps, flow_images = _timeline(the_flow)
    compare_a, compare_b = _compare_pair(flow_images)
    return _page(
        "studio/flow.html",
        "studio/_compare.html",
        project,
        flow=the_flow,
        title=_flow_title(the_flow),
        steps=steps,
        flow_images=flow_images,
        aliases=flows.alias_map(the_flow.id),
        alias_errors={},
        compare_a=compare_a,
        compare_b=compare_b,
    )


def _aliases_response(
    project: Project, the_flow: Flow, errors: dict[str, str] | None = None
) -> Response:
    flow_images = flows.flow_images(the_flow, limit=TIMELINE_LIMIT, offset=0).items
    context = {
        "flow": the_flow,
        "flow_images": flow_images,
        "aliases": flows.alias_map(the_flow.id),
        "alias_errors": errors or {},
    }
    if is_fragment_request():
        return render_page(
            "studio/_flow_aliases.html",
            project=project,
            status=422 if errors else 200,
            **context,
        )
    if errors:
        steps, _ = _timeline(the_flow)
        compare_a, compare_b = _compare_pair(flow_images)
        return _page(
            "studio/flow.html",
            None,
            project,
            status=422,
            title=_flow_title(the_flow),
            steps=steps,
            compare_a=compare_a,
            compare_b=compare_b,
            **context,
        )
    return redirect(url_for("studio.flow", project_id=project.id, flow_id=the_flow.id), code=303)


@bp.post("/flows/<flow_id>/aliases")
@login_required
def set_flow_alias(project_id: str, flow_id: str):
    """Add a flow alias or point an existing one at another image."""
    project = _project(project_id)
    the_flow = flows.get_flow(project.id, flow_id)
    alias = (request.form.get("alias") or "").strip()
    try:
        flows.merge_aliases(project.id, the_flow, {alias: request.form.get("image_id")})
    except DomainError as exc:
        known = alias in flows.alias_map(the_flow.id)
        return _aliases_response(project, the_flow, {alias if known else "new": exc.message})
    return _aliases_response(project, the_flow)


@bp.post("/flows/<flow_id>/aliases/remove")
@login_required
def remove_flow_alias(project_id: str, flow_id: str):
    project = _project(project_id)
    the_flow = flows.get_flow(project.id, flow_id)
    flows.remove_alias(the_flow, request.form.get("alias") or "")
    return _aliases_response(project, the_flow)


@bp.post("/flows/<flow_id>/delete")
@login_required
def delete_flow(project_id: str, flow_id: str):
    project = _project(project_id)
    flows.delete_flow(flows.get_flow(project.id, flow_id))
    flash("Flow deleted; its images and generations are kept.", "success")
    return redirect(url_for("studio.flow_list", project_id=project.id), code=303)


# --- images -------------------------------------------------------------------------------

LIBRARY_TABS = ("all", "uploaded", "generated", "deleted")


@bp.get("/images")
@login_required
def image_library(project_id: str):
    """The image library: tabs by source, a deleted tab with restore, and a flow filter."""
    return _render_library(_project(project_id))


def _render_library(
    project: Project,
    *,
    upload_error: str | None = None,
    alias_errors: dict[str, list[str]] | None = None,
    status: int = 200,
) -> Response:
    """The library as the query string asks; without scripts, form errors are shown in it
    (`upload_error` at the drop zone, `alias_errors` by image id at that card's alias)."""
    tab = request.args.get("tab") if request.args.get("tab") in LIBRARY_TABS else "all"
    flow_id = request.args.get("flow_id") or None
    offset = _offset()
    query = images.list_query(
        project.id,
        flow_id=flow_id,
        source=tab if tab in ("uploaded", "generated") else None,
        include_deleted=tab == "deleted",
    )
    if tab == "deleted":
        query = query.where(Image.deleted_at.is_not(None))
    found = fetch_page(query, limit=LIBRARY_PAGE, offset=offset)
    return _page(
        "studio/images.html",
        "studio/_image_grid.html",
        project,
        status=status,
        tab=tab,
        tabs=LIBRARY_TABS,
        flow_id=flow_id,
        found=found,
        offset=offset,
        limit=LIBRARY_PAGE,
        flow_choices=_flow_choices(project)[1:],
        upload_error=upload_error,
        card_alias_errors=alias_errors or {},
    )


def _image(project: Project, image_id: str, *, include_deleted: bool = False) -> Image:
    return images.get_image(project.id, image_id, include_deleted=include_deleted)


def _image_response(
    project: Project,
    image: Image,
    *,
    deleted: bool = False,
    alias_errors: list[str] | None = None,
    status: int = 200,
) -> Response:
    """The changed image as the caller shows it: a board card, a library card or a
    reference choice (`view`)."""
    view = request.values.get("view", "library")
    if view == "board":
        item = _board_item(project, image, deleted=deleted)
        return render_page(
            "studio/_board_card.html",
            project=project,
            item=item,
            alias_form_errors=alias_errors,
            status=status,
        )
    if view == "reference":
        option = ReferenceOption(image, checked=True)
        return render_page(
            "studio/_reference_option.html", project=project, option=option, status=status
        )
    return render_page(
        "studio/_image_card.html",
        project=project,
        image=image,
        deleted=deleted,
        alias_errors=alias_errors,
        status=status,
    )


def _back_to_library(project: Project, message: str) -> Response:
    flash(message, "success")
    target = request.referrer or url_for("studio.image_library", project_id=project.id)
    return redirect(target, code=303)


@bp.post("/images")
@login_required
def upload_image(project_id: str):
    """Upload one image (drag and drop sends one request per file, with progress)."""
    project = _project(project_id)
    upload = request.files.get("file") or request.files.get("reference_file")
    alias = (request.form.get("alias") or "").strip() or None
    try:
        image = images.upload(project.id, upload.read() if upload else b"", alias=alias)
    except DomainError as exc:
        if is_fragment_request():
            raise
        return _render_library(project, upload_error=exc.message, status=exc.status)
    if not is_fragment_request():
        return _back_to_library(project, "Image uploaded.")
    return _image_response(project, image, status=201)


@bp.post("/images/<image_id>/alias")
@login_required
def set_alias(project_id: str, image_id: str):
    project = _project(project_id)
    image = _image(project, image_id)
    alias = (request.form.get("alias") or "").strip() or None
    try:
        images.set_alias(image, alias)
    except DomainError as exc:
        if not is_fragment_request():
            return _render_library(project, alias_errors={image.id: [exc.message]}, status=422)
        return _image_response(project, image, alias_errors=[exc.message], status=422)
    if not is_fragment_request():
        return _back_to_library(project, f"Alias set to {alias}." if alias else "Alias removed.")
    response = _image_response(project, image)
    return _trigger(response, toast=_toast(f"Alias {alias} set" if alias else "Alias removed"))


@bp.post("/images/<image_id>/focal-point")
@login_required
def set_focal_point(project_id: str, image_id: str):
    project = _project(project_id)
    image = _image(project, image_id)
    try:
        point = {"x": float(request.form["x"]), "y": float(request.form["y"])}
    except (KeyError, ValueError):
        point = {"x": None, "y": None}
    images.update_image(image, {"focalPoint": point})
    if not is_fragment_request():
        return _back_to_library(project, "Focal point saved.")
    return _trigger(_image_response(project, image), toast=_toast("Focal point saved"))


@bp.post("/images/<image_id>/delete")
@login_required
def delete_image(project_id: str, image_id: str):
    project = _project(project_id)
    image = _image(project, image_id)
    images.delete_image(image)
    if not is_fragment_request():
        return _back_to_library(project, "Image deleted. Restore it from the Deleted tab.")
    return _image_response(project, image, deleted=True)


@bp.post("/images/<image_id>/restore")
@login_required
def restore_image(project_id: str, image_id: str):
    project = _project(project_id)
    image = images.restore_image(_image(project, image_id, include_deleted=True))
    if not is_fragment_request():
        return _back_to_library(project, "Image restored.")
    return _trigger(_image_response(project, image), toast=_toast("Image restored"))


# --- settings -----------------------------------------------------------------------------


def _settings_forms(project: Project) -> tuple[DefaultsForm, LiveForm]:
    defaults = DefaultsForm(
        formdata=None,
        default_aspect_ratio=project.default_aspect_ratio,
        default_model=project.default_model or "",
    )
    live = LiveForm(
        formdata=None,
        live_allowed_origins="\n".join(project.live_allowed_origins or []),
        live_daily_limit=project.live_daily_limit,
    )
    defaults.default_model.choices = _model_choices()
    return defaults, live


def _render_settings(
    project: Project,
    defaults: DefaultsForm,
    live: LiveForm,
    fragment: str | None = None,
    status: int = 200,
) -> Response:
    return render_page(
        "studio/settings.html",
        fragment,
        status=status,
        project=project,
        active_page="projects",
        defaults_form=defaults,
        live_form=live,
        aspect_ratios=ASPECT_RATIOS,
    )


@bp.get("/settings")
@login_required
def settings(project_id: str):
    project = _project(project_id)
    return _render_settings(project, *_settings_forms(project))


@bp.post("/settings/defaults")
@login_required
def save_defaults(project_id: str):
    project = _project(project_id)
    defaults, live = _settings_forms(project)
    defaults.process(request.form)
    if defaults.validate():
        try:
            projects.update_settings(
                project,
                {
                    "defaultAspectRatio": defaults.default_aspect_ratio.data,
                    "defaultModel": defaults.default_model.data or None,
                },
            )
        except DomainError as exc:
            if not _field_errors(
                defaults,
                exc,
                {
                    "INVALID_ASPECT_RATIO": "default_aspect_ratio",
                    "defaultModel": "default_model",
                },
            ):
                raise
        else:
            return _saved(project, "Defaults saved", "studio/_settings_defaults.html")
    return _render_settings(project, defaults, live, "studio/_settings_defaults.html", status=422)


@bp.post("/settings/live")
@login_required
def save_live(project_id: str):
    project = _project(project_id)
    defaults, live = _settings_forms(project)
    live.process(request.form)
    if live.validate():
        origins = [line.strip() for line in (live.live_allowed_origins.data or "").splitlines()]
        try:
            projects.update_settings(
                project,
                {
                    "liveAllowedOrigins": [o for o in origins if o],
                    "liveDailyLimit": live.live_daily_limit.data,
                },
            )
        except DomainError as exc:
            if not _field_errors(
                live,
                exc,
                {
                    "liveAllowedOrigins": "live_allowed_origins",
                    "liveDailyLimit": "live_daily_limit",
                },
            ):
                raise
        else:
            return _saved(project, "Live endpoint settings saved", "studio/_settings_live.html")
    return _render_settings(project, defaults, live, "studio/_settings_live.html", status=422)


@bp.post("/settings/live-secret")
@login_required
def rotate_live_secret(project_id: str):
    project = projects.rotate_live_secret(_project(project_id))
    message = "Live secret rotated; the previous one keeps working for 24 hours"
    return _saved(project, message, "studio/_settings_live.html")


@bp.post("/settings/webhook-secret")
@login_required
def rotate_webhook_secret(project_id: str):
    project = projects.rotate_webhook_secret(_project(project_id))
    return _saved(project, "Webhook secret rotated", "studio/_settings_webhook.html")


@bp.get("/settings/live-url")
@login_required
def live_url(project_id: str):
    """The signed URL builder: a public live URL for a prompt, with its preview."""
    project = _project(project_id)
    prompt = request.args.get("prompt", "")
    ratio = request.args.get("aspect_ratio", "")
    context: dict[str, Any] = {"live_prompt": prompt, "live_ratio": ratio}
    try:
        live.clean_request(project.default_aspect_ratio, prompt, ratio)
    except DomainError as exc:
        context["live_error"] = exc.message
        status = 422
    else:
        params = {"prompt": prompt, "aspectRatio": ratio} if ratio else {"prompt": prompt}
        sig = live.sign(project, prompt, ratio)
        context["live_url"] = external_url(
            "live.live_image", project_id=project.id, **params, sig=sig
        )
        status = 200
    if is_fragment_request():
        return render_page("studio/_live_url.html", project=project, status=status, **context)
    defaults, live_form = _settings_forms(project)
    return render_page(
        "studio/settings.html",
        status=status,
        project=project,
        active_page="projects",
        defaults_form=defaults,
        live_form=live_form,
        aspect_ratios=ASPECT_RATIOS,
        **context,
    )


def _saved(project: Project, message: str, fragment: str) -> Response:
    """After a settings change: the updated card for htmx, else PRG back to the page."""
    if is_fragment_request():
        response = _render_settings(project, *_settings_forms(project), fragment)
        return _trigger(response, toast=_toast(message))
    flash(message, "success")
    return redirect(url_for("studio.settings", project_id=project.id), code=303)
