"""`reengage templates create|update|list|show|submit|approve|reject`: the template library over
gRPC (TemplateService), so a user never writes a request by hand.

Templates live at the brand (`franchisors/{f}`: every location may use them; `--lock-mode
editable` lets a location override one) or at a location (`--location`: its own templates, and
its overrides of editable brand templates with `--override-of`, which the franchisor approves:
`submit`, then `approve` or `reject`). Without --location or --franchisor a command acts at the
caller's franchisor. `show` prints the body, the revisions, the approval state, and how the text
goes out (encoding and segments with sample values, from PreviewTemplate), as a later text and as
the first text of an enrollment (which gets the brand name and an opt-out line when missing).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import grpc
from rich.console import Console
from rich.table import Table
from rich.text import Text

from reengage.v1 import templates_pb2 as pb
from reengage.v1 import templates_pb2_grpc
from server.cli.api import TIMEOUT, Api, CliError, every
from server.cli.discovery import add_api_flags, api_for
from server.cli.display import label_grid, last_segment
from server.cli.names import TEMPLATES, resolve
from server.cli.tenant_flags import add_scope_flags, location_flag, parent_for
from server.config import Settings
from tenants.core.languages import DEFAULT_LANGUAGE

DESCRIPTION = """\
A template is a text with placeholders: {{contact.first_name|there}} (a value, or the fallback
after |), {{contact.last_name}}, {{contact.attrs.KEY|fallback}}, {{location.name}},
{{location.phone}}, {{brand.name}}, {{last_purchase.item|your last order}},
{{last_activity.date}}, {{link:https://...}} (a tracked short link).

Brand templates (the default: at your franchisor) are used by every location; --lock-mode
editable lets a location make its own version (an override, --override-of), which the
franchisor approves (submit, approve, reject). `show` tells how a text goes out: GSM-7 or
UCS-2, segments, and what the first text of an enrollment gets added (brand, opt-out line).

  reengage templates create first-hello --body "Hi {{contact.first_name|there}}, ..."
  reengage templates show first-hello

Languages: a template's text is in its default language (--language on create, en when left
out); `update --language es --body ...` writes its Spanish variant (an override's needs the
franchisor's approval: submit/approve/reject --language es). Contacts get the variant of their
preferred language, else the default text (docs/languages.md).

  reengage templates update first-hello --language es --body "Hola {{contact.first_name|amigo}}..."
"""
KINDS = {
    pb.TEMPLATE_KIND_BRAND: "brand",
    pb.TEMPLATE_KIND_LOCATION: "location",
    pb.TEMPLATE_KIND_OVERRIDE: "override",
}
STATES = {
    pb.APPROVAL_STATE_DRAFT: "draft",
    pb.APPROVAL_STATE_PENDING_APPROVAL: "pending approval",
    pb.APPROVAL_STATE_APPROVED: "approved",
    pb.APPROVAL_STATE_REJECTED: "rejected",
}
STATE_FILTERS = {
    "any": pb.APPROVAL_STATE_UNSPECIFIED,
    "draft": pb.APPROVAL_STATE_DRAFT,
    "pending": pb.APPROVAL_STATE_PENDING_APPROVAL,
    "approved": pb.APPROVAL_STATE_APPROVED,
    "rejected": pb.APPROVAL_STATE_REJECTED,
}
LOCKS = {"locked": pb.LOCK_MODE_LOCKED, "editable": pb.LOCK_MODE_EDITABLE}
ENCODINGS = {pb.ENCODING_GSM7: "GSM-7", pb.ENCODING_UCS2: "UCS-2"}


def _stub(channel: grpc.Channel) -> templates_pb2_grpc.TemplateServiceStub:
    return templates_pb2_grpc.TemplateServiceStub(channel)


def _body(args: argparse.Namespace) -> str | None:
    """--body, or the text of --body-file (its last line break dropped); None when neither."""
    if args.body_file is None:
        return str(args.body) if args.body is not None else None
    path = Path(args.body_file)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"--body-file: {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"--body-file: {path}: cannot be read ({exc})") from None
    return text.removesuffix("\n").removesuffix("\r")


def _segments(encoding: int, count: int) -> str:
    return f"{ENCODINGS.get(encoding, '?')}, {count} segment{'s' if count != 1 else ''}"


def template_details(
    api: Api, channel: grpc.Channel, template: pb.Template, console: Console
) -> None:
    """The template as `show` prints it: fields, then how it goes out, then warnings."""
    stub = _stub(channel)
    preview = stub.PreviewTemplate(
        pb.PreviewTemplateRequest(name=template.name), metadata=api.metadata, timeout=TIMEOUT
    )
    first = stub.PreviewTemplate(
        pb.PreviewTemplateRequest(name=template.name, first_message=True),
        metadata=api.metadata,
        timeout=TIMEOUT,
    )
    kind = KINDS.get(template.kind, "?")
    if template.kind == pb.TEMPLATE_KIND_BRAND:
        kind += (
            " (editable: a location may override it)"
            if template.lock_mode == pb.LOCK_MODE_EDITABLE
            else " (locked: locations send it as it is)"
        )
    elif template.kind == pb.TEMPLATE_KIND_OVERRIDE:
        kind += f" of {template.override_of}"
    state = STATES.get(template.state, "?")
    if template.state != pb.APPROVAL_STATE_APPROVED:
        live = last_segment(template.live_revision) if template.live_revision else "none yet"
        state += f" (live revision: {live})"
    rows: list[tuple[str, str]] = [
        ("name", template.name),
        ("display name", template.display_name),
        ("kind", kind),
        ("state", state + (", archived" if template.archived else "")),
        ("revision", last_segment(template.latest_revision)),
        ("body", template.body),
    ]
    if template.live_revision and template.live_revision != template.latest_revision:
        rows.append(("live body", template.live_body))
    if template.variants or template.default_language != DEFAULT_LANGUAGE:
        rows.append(("languages", _languages(template)))
    rows += [
        ("sample text", preview.text),
        ("sent as", _segments(preview.encoding, preview.segment_count)),
        ("as first text", _segments(first.encoding, first.segment_count)),
    ]
    if preview.unicode_characters:
        chars = " ".join(
            repr(u.character) + (f"→{u.replacement!r}" if u.has_replacement else "")
            for u in preview.unicode_characters[:10]
        )
        rows.append(("UCS-2 because", chars))
    if preview.missing_variables:
        rows.append(("no value for", ", ".join(preview.missing_variables)))
    console.print(label_grid(rows))
    warnings = list(dict.fromkeys([*preview.warnings, *first.warnings]))
    for warning in warnings:
        console.print(Text(f"warning: {warning}"))


def _languages(template: pb.Template) -> str:
    """`en (default), es (approved), fr (draft, live revision 3)`."""
    parts = [f"{template.default_language} (default)"]
    for v in template.variants:
        state = STATES.get(v.latest_state, "?")
        if v.latest_state != pb.APPROVAL_STATE_APPROVED:
            state += f", live revision: {last_segment(v.live_revision) or 'none yet'}"
        parts.append(f"{v.language} ({state})")
    return ", ".join(parts)


def variant_details(template: pb.Template, language: str, console: Console) -> None:
    """One language's text of a template, as `show --language` prints it."""
    if language.casefold() == template.default_language.casefold():
        found = pb.TemplateVariant(
            language=template.default_language,
            latest_revision=template.latest_revision,
            latest_state=template.state,
            latest_body=template.body,
            live_revision=template.live_revision,
            live_body=template.live_body,
        )
    else:
        matches = [v for v in template.variants if v.language.casefold() == language.casefold()]
        if not matches:
            raise CliError(
                f"{template.name} has no {language} text: add one with"
                f" `reengage templates update {last_segment(template.name)} --language {language}"
                " --body TEXT`"
            )
        found = matches[0]
    rows = [
        ("name", template.name),
        ("language", found.language),
        ("state", STATES.get(found.latest_state, "?")),
        ("revision", last_segment(found.latest_revision)),
        ("body", found.latest_body),
    ]
    if found.live_revision != found.latest_revision:
        live = last_segment(found.live_revision) if found.live_revision else "none yet"
        rows.append(("live revision", live))
        if found.live_revision:
            rows.append(("live body", found.live_body))
    console.print(label_grid(rows))


def _template_name(args: argparse.Namespace, api: Api, channel: grpc.Channel) -> str:
    """The full name of the TEMPLATE argument (an id is looked for at --location, then its
    brand; without --location wherever the key reaches)."""
    location = location_flag(args, api, channel)
    return resolve(api, channel, args.template, TEMPLATES, location=location, flag="template")


def cmd_create(args: argparse.Namespace, settings: Settings) -> None:
    api = api_for(args, settings)
    body = _body(args)
    if body is None and not args.override_of:
        raise CliError("templates create: give the text with --body TEXT or --body-file FILE")
    given = args.template.strip()
    with api.channel() as channel:
        if given.startswith("franchisors/"):
            if args.location or args.franchisor:
                raise CliError("templates create: a full name says where; drop --location")
            parent, _, template_id = given.rpartition("/templates/")
            if not parent or "/" in template_id:
                raise CliError(f"templates create: {given!r} is not a template name or an id")
        else:
            parent, template_id = parent_for(args, api, channel), given
        override_of = ""
        if args.override_of:
            if "/locations/" not in parent:
                raise CliError("--override-of: an override lives at a location: add --location")
            brand = "/".join(parent.split("/")[:2])
            override_of = resolve(
                api, channel, args.override_of, TEMPLATES, location=brand, flag="--override-of"
            )
        if args.lock_mode and "/locations/" in parent:
            raise CliError("--lock-mode: only brand templates have one (drop --location)")
        created = _stub(channel).CreateTemplate(
            pb.CreateTemplateRequest(
                parent=parent,
                template_id=template_id,
                template=pb.Template(
                    display_name=args.display_name or template_id,
                    body=body or "",
                    lock_mode=LOCKS.get(args.lock_mode or "", pb.LOCK_MODE_UNSPECIFIED),
                    override_of=override_of,
                    default_language=args.language or "",
                ),
            ),
            metadata=api.metadata,
            timeout=TIMEOUT,
        )
        console = Console()
        console.print(Text(f"created {created.name}"))
        template_details(api, channel, created, console)
        if created.kind == pb.TEMPLATE_KIND_OVERRIDE:
            console.print(
                Text(
                    "an override is a draft until the franchisor approves it: "
                    f"reengage templates submit {created.name}"
                )
            )


def cmd_update(args: argparse.Namespace, settings: Settings) -> None:
    api = api_for(args, settings)
    body = _body(args)
    changes = pb.Template()
    paths = []
    if body is not None:
        changes.body = body
        paths.append("body")
    if args.display_name:
        changes.display_name = args.display_name
        paths.append("display_name")
    if args.lock_mode:
        changes.lock_mode = LOCKS[args.lock_mode]
        paths.append("lock_mode")
    if not paths:
        raise CliError(
            "templates update: nothing to change: give --body, --body-file, --display-name"
            " or --lock-mode"
        )
    with api.channel() as channel:
        stub = _stub(channel)
        name = _template_name(args, api, channel)
        current = stub.GetTemplate(
            pb.GetTemplateRequest(name=name), metadata=api.metadata, timeout=TIMEOUT
        )
        changes.name, changes.etag = name, current.etag
        request = pb.UpdateTemplateRequest(template=changes, language=args.language or "")
        request.update_mask.paths.extend(paths)
        updated = stub.UpdateTemplate(request, metadata=api.metadata, timeout=TIMEOUT)
        console = Console()
        console.print(Text(f"updated {updated.name}"))
        if args.language:
            variant_details(updated, args.language, console)
        else:
            template_details(api, channel, updated, console)


def list_templates(
    api: Api, channel: grpc.Channel, request: pb.ListTemplatesRequest
) -> list[pb.Template]:
    """Every page of ListTemplates."""
    return list(every(api, _stub(channel).ListTemplates, request, "templates"))


def templates_table(templates: list[pb.Template], title: str) -> Table:
    """id, where, kind, state, segments, display name: fits 80 columns (names fold)."""
    table = Table(title=title, title_justify="left")
    table.add_column("id", overflow="fold")
    table.add_column("where", overflow="fold")
    table.add_column("kind")
    table.add_column("state", overflow="fold")
    table.add_column("seg", justify="right")
    table.add_column("display name", overflow="fold")
    for t in templates:
        scope = t.name.rsplit("/templates/", 1)[0]
        where = "brand" if "/locations/" not in scope else last_segment(scope)
        state = STATES.get(t.state, "?") + (" (archived)" if t.archived else "")
        table.add_row(
            Text(last_segment(t.name)),
            Text(where),
            KINDS.get(t.kind, "?"),
            state,
            str(t.segment_count),
            Text(t.display_name),
        )
    return table


def cmd_list(args: argparse.Namespace, settings: Settings) -> None:
    api = api_for(args, settings)
    with api.channel() as channel:
        parent = parent_for(args, api, channel)
        scope = pb.TEMPLATE_LIST_SCOPE_ALL if args.all else pb.TEMPLATE_LIST_SCOPE_UNSPECIFIED
        found = list_templates(
            api,
            channel,
            pb.ListTemplatesRequest(
                parent=parent,
                scope=scope,
                state=STATE_FILTERS[args.state],
                text=args.text or "",
                show_archived=args.archived,
            ),
        )
    console = Console()
    if not found:
        console.print(
            Text(f"no templates at {parent}: create one with `reengage templates create`")
        )
        return
    console.print(templates_table(found, f"templates at {parent}: {len(found)}"))


def cmd_show(args: argparse.Namespace, settings: Settings) -> None:
    api = api_for(args, settings)
    with api.channel() as channel:
        name = _template_name(args, api, channel)
        found = _stub(channel).GetTemplate(
            pb.GetTemplateRequest(name=name), metadata=api.metadata, timeout=TIMEOUT
        )
        if args.language:
            variant_details(found, args.language, Console())
        else:
            template_details(api, channel, found, Console())


def _decide(verb: str) -> Callable[[argparse.Namespace, Settings], None]:
    def run(args: argparse.Namespace, settings: Settings) -> None:
        api = api_for(args, settings)
        with api.channel() as channel:
            stub = _stub(channel)
            name = _template_name(args, api, channel)
            etag = stub.GetTemplate(
                pb.GetTemplateRequest(name=name), metadata=api.metadata, timeout=TIMEOUT
            ).etag
            language = args.language or ""
            if verb == "submit":
                done = stub.SubmitTemplate(
                    pb.SubmitTemplateRequest(name=name, etag=etag, language=language),
                    metadata=api.metadata,
                    timeout=TIMEOUT,
                )
            elif verb == "approve":
                done = stub.ApproveTemplate(
                    pb.ApproveTemplateRequest(name=name, etag=etag, language=language),
                    metadata=api.metadata,
                    timeout=TIMEOUT,
                )
            else:
                done = stub.RejectTemplate(
                    pb.RejectTemplateRequest(
                        name=name, etag=etag, reason=args.reason, language=language
                    ),
                    metadata=api.metadata,
                    timeout=TIMEOUT,
                )
        state = done.state
        if language and language.casefold() != done.default_language.casefold():
            variant = [v for v in done.variants if v.language.casefold() == language.casefold()]
            state = variant[0].latest_state if variant else state
            print(f"{done.name} ({language}): {STATES.get(state, '?')}")
            return
        print(f"{done.name}: {STATES.get(state, '?')}")

    return run


def _show_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "template",
        metavar="TEMPLATE",
        help="the template's id (first-hello) or full name (franchisors/{f}/templates/{t})",
    )
    parser.add_argument(
        "--location",
        metavar="LOCATION",
        help="look for the id at this location first (then its brand): its name or id",
    )
    parser.add_argument(
        "--language",
        metavar="TAG",
        help="the text in this language (a BCP-47 tag: es, es-MX) instead of the default one",
    )
    add_api_flags(parser)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Registers `reengage templates …`."""
    templates = sub.add_parser(
        "templates",
        help="message templates: create, update, list, show, and approve overrides",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ).add_subparsers(dest="templates_cmd", required=True, metavar="COMMAND")

    create = templates.add_parser(
        "create",
        help="create a template (at your franchisor, or at --location)",
        description="Create a template. Placeholders: {{contact.first_name|there}},"
        " {{location.name}}, {{brand.name}}, {{link:https://...}} and more (see"
        " `reengage templates show`). Prints the template and how it goes out.",
    )
    create.add_argument(
        "template",
        metavar="ID_OR_NAME",
        help="the new template's id: 1-63 of a-z 0-9 -, starting with a letter (first-hello);"
        " or its full name franchisors/{f}[/locations/{l}]/templates/{id}",
    )
    text = create.add_mutually_exclusive_group()
    text.add_argument("--body", metavar="TEXT", help="the message text, with placeholders")
    text.add_argument("--body-file", metavar="FILE", help="read the message text from FILE")
    create.add_argument("--display-name", help="what it is for (default: the id)")
    create.add_argument(
        "--lock-mode",
        choices=sorted(LOCKS),
        help="brand templates: may a location override it? (default: locked)",
    )
    create.add_argument(
        "--override-of",
        metavar="BRAND_TEMPLATE",
        help="with --location: create this location's override of an editable brand template"
        " (the body may then be left out: it starts from the brand's)",
    )
    create.add_argument(
        "--language",
        metavar="TAG",
        help="the language the body is written in, its default language (a BCP-47 tag;"
        " default: en; an override takes its brand template's)",
    )
    add_scope_flags(create, "create it")
    add_api_flags(create)
    create.set_defaults(func=cmd_create)

    update = templates.add_parser(
        "update", help="change a template's text, display name or lock mode (a new revision)"
    )
    _show_flags(update)
    body = update.add_mutually_exclusive_group()
    body.add_argument("--body", metavar="TEXT", help="the new message text")
    body.add_argument("--body-file", metavar="FILE", help="read the new message text from FILE")
    update.add_argument("--display-name", help="the new display name")
    update.add_argument("--lock-mode", choices=sorted(LOCKS), help="brand templates only")
    update.set_defaults(func=cmd_update)

    listing = templates.add_parser(
        "list",
        help="list templates (at a location: its own and its brand's)",
    )
    add_scope_flags(listing, "list templates")
    listing.add_argument(
        "--all",
        action="store_true",
        help="brand and location templates both (at a franchisor: every location's too)",
    )
    listing.add_argument(
        "--state",
        choices=list(STATE_FILTERS),
        default="any",
        help="only templates whose latest revision is in this state (default: %(default)s)",
    )
    listing.add_argument("--text", help="only templates whose name or body contains TEXT")
    listing.add_argument("--archived", action="store_true", help="include archived templates")
    add_api_flags(listing)
    listing.set_defaults(func=cmd_list)

    show = templates.add_parser(
        "show",
        help="a template's body, revision, approval state, encoding and segments, warnings",
    )
    _show_flags(show)
    show.set_defaults(func=cmd_show)

    for verb, says in (
        ("submit", "submit a location's override for the franchisor's approval"),
        ("approve", "approve a submitted override: it becomes live (franchisor admins)"),
        ("reject", "reject a submitted override with a reason (franchisor admins)"),
    ):
        decide = templates.add_parser(verb, help=says)
        _show_flags(decide)
        if verb == "reject":
            decide.add_argument("--reason", required=True, help="why; shown to the location")
        decide.set_defaults(func=_decide(verb))
