"""The template placeholder language: small, safe, no code execution.

    Hi {{contact.first_name|there}}, your {{last_purchase.item|last order}} misses you.
    {{link:https://shop.example/cart}}

A placeholder is `{{variable}}` or `{{variable|fallback}}` (whitespace around either is
ignored), `{{link:URL}}` (a tracked link, rendered as a short link on the brand's domain), or
`{{coupon:CODE}}` (a coupon code, rendered as the code itself and recorded with the text, so a
purchase that uses it can be credited to the text: docs/reporting.md).
Variables come from a fixed list; `contact.attrs.<key>` reads a custom contact attribute.
Parsing returns text and placeholder parts, or a TemplateSyntaxError with the character
position of the problem. Rendering never invents a value: a variable that is empty and has no
fallback is reported as missing, so the send path skips the step instead of sending "Hi ,".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

VARIABLES = frozenset(
    {
        "contact.first_name",
        "contact.last_name",
        "location.name",
        "location.phone",
        "brand.name",
        "last_purchase.item",
        "last_activity.date",
    }
)
ATTRS_PREFIX = "contact.attrs."
_ATTR_KEY = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
COUPON_CODE = re.compile(r"[A-Z0-9_-]{1,32}")
MAX_BODY_CHARS = 2000
MAX_FALLBACK_CHARS = 100

# compliance §6: carriers filter public shorteners; tracked links use the brand's own domain.
PUBLIC_SHORTENERS = frozenset(
    {
        "bit.ly",
        "bitly.com",
        "tinyurl.com",
        "ow.ly",
        "is.gd",
        "t.ly",
        "cutt.ly",
        "rb.gy",
        "rebrand.ly",
        "tiny.cc",
        "goo.gl",
        "t.co",
        "buff.ly",
        "shorturl.at",
        "s.id",
        "v.gd",
        "bl.ink",
        "short.io",
        "tr.im",
        "lnkd.in",
        "qr.ae",
        "adf.ly",
        "soo.gd",
        "clck.ru",
        "shorte.st",
        "x.co",
        "2.gy",
        "urlz.fr",
        "u.to",
        "t2m.io",
    }
)
_BARE_URL = re.compile(r"(?i)\b(?:https?://)?((?:[a-z0-9-]+\.)+[a-z]{2,})(?=[/\s?#]|$)")


class TemplateSyntaxError(ValueError):
    """A body that is not a valid template; `position` is the 0-based character offset."""

    def __init__(self, position: int, message: str) -> None:
        super().__init__(f"at character {position}: {message}")
        self.position = position
        self.problem = message


@dataclass(frozen=True)
class Text:
    value: str


@dataclass(frozen=True)
class Variable:
    name: str
    fallback: str | None
    position: int


@dataclass(frozen=True)
class Link:
    url: str
    position: int


@dataclass(frozen=True)
class Coupon:
    code: str
    position: int


Part = Text | Variable | Link | Coupon


@dataclass(frozen=True)
class ParsedTemplate:
    parts: tuple[Part, ...]

    @property
    def variables(self) -> tuple[Variable, ...]:
        return tuple(p for p in self.parts if isinstance(p, Variable))

    @property
    def links(self) -> tuple[Link, ...]:
        return tuple(p for p in self.parts if isinstance(p, Link))

    @property
    def coupons(self) -> tuple[Coupon, ...]:
        return tuple(p for p in self.parts if isinstance(p, Coupon))


def is_shortener(host: str) -> bool:
    host = host.lower().rstrip(".")
    return any(host == s or host.endswith("." + s) for s in PUBLIC_SHORTENERS)


def _check_variable(name: str, position: int) -> None:
    if name in VARIABLES:
        return
    if name.startswith(ATTRS_PREFIX):
        key = name[len(ATTRS_PREFIX) :]
        if _ATTR_KEY.fullmatch(key):
            return
        raise TemplateSyntaxError(
            position, f"contact attribute key {key!r} must be lower_snake_case (a-z, 0-9, _)"
        )
    known = ", ".join(sorted(VARIABLES))
    raise TemplateSyntaxError(
        position, f"unknown variable {name[:60]!r} (known: {known}, contact.attrs.<key>)"
    )


def _check_link(url: str, position: int) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname or " " in url:
        raise TemplateSyntaxError(position, f"link {url[:80]!r} must be an absolute http(s) URL")
    if is_shortener(parts.hostname):
        raise TemplateSyntaxError(
            position,
            f"public URL shortener {parts.hostname} is not allowed: carriers filter them; "
            "use the full URL, which becomes a tracked link on the brand's domain",
        )


def _check_text(text: str, offset: int) -> None:
    for match in _BARE_URL.finditer(text):
        if is_shortener(match[1]):
            raise TemplateSyntaxError(
                offset + match.start(),
                f"public URL shortener {match[1]} is not allowed: carriers filter them",
            )


def parse(body: str) -> ParsedTemplate:
    """Parses body, or raises TemplateSyntaxError naming the position of the first problem."""
    if len(body) > MAX_BODY_CHARS:
        raise TemplateSyntaxError(
            MAX_BODY_CHARS, f"body is longer than {MAX_BODY_CHARS} characters"
        )
    parts: list[Part] = []
    i = 0
    while i < len(body):
        start = body.find("{{", i)
        stray = body.find("}}", i)
        if stray != -1 and (start == -1 or stray < start):
            raise TemplateSyntaxError(stray, "'}}' without an opening '{{'")
        if start == -1:
            _check_text(body[i:], i)
            parts.append(Text(body[i:]))
            break
        if start > i:
            _check_text(body[i:start], i)
            parts.append(Text(body[i:start]))
        end = body.find("}}", start + 2)
        if end == -1:
            raise TemplateSyntaxError(start, "'{{' is never closed with '}}'")
        inner = body[start + 2 : end]
        if "{{" in inner:
            raise TemplateSyntaxError(start, "'{{' is never closed with '}}'")
        parts.append(_placeholder(inner, start))
        i = end + 2
    return ParsedTemplate(tuple(parts))


def _placeholder(inner: str, position: int) -> Part:
    stripped = inner.strip()
    if stripped.startswith("link:"):
        url = stripped[len("link:") :].strip()
        _check_link(url, position)
        return Link(url, position)
    if stripped.startswith("coupon:"):
        code = stripped[len("coupon:") :].strip()
        if not COUPON_CODE.fullmatch(code):
            raise TemplateSyntaxError(
                position,
                f"coupon code {code[:40]!r} must be 1-32 upper-case letters, digits, '-' or '_'"
                " (e.g. {{coupon:SPRING-25}})",
            )
        return Coupon(code, position)
    name, bar, fallback = stripped.partition("|")
    name = name.strip()
    if not name:
        raise TemplateSyntaxError(position, "empty placeholder '{{}}'")
    _check_variable(name, position)
    if not bar:
        return Variable(name, None, position)
    fallback = fallback.strip()
    if not fallback:
        raise TemplateSyntaxError(
            position, f"empty fallback after '|' in {{{{{name}|}}}}: write one or drop the '|'"
        )
    if "|" in fallback or "{" in fallback or "}" in fallback:
        raise TemplateSyntaxError(position, "a fallback may not contain '|', '{' or '}'")
    if len(fallback) > MAX_FALLBACK_CHARS:
        raise TemplateSyntaxError(position, f"fallback is longer than {MAX_FALLBACK_CHARS}")
    return Variable(name, fallback, position)


@dataclass(frozen=True)
class RenderContext:
    """The values a template may use. Empty strings are missing values."""

    values: Mapping[str, str] = field(default_factory=dict)
    attrs: Mapping[str, str] = field(default_factory=dict)

    def lookup(self, name: str) -> str:
        if name.startswith(ATTRS_PREFIX):
            return (self.attrs.get(name[len(ATTRS_PREFIX) :]) or "").strip()
        return (self.values.get(name) or "").strip()


class MissingValues(ValueError):
    """The rendering lacks values that have no fallback; the message must not be sent."""

    def __init__(self, names: tuple[str, ...]) -> None:
        super().__init__(f"no value and no fallback for {', '.join(names)}")
        self.names = names


@dataclass(frozen=True)
class Rendering:
    """A rendered body. `preview` shows missing variables as {{name}}; `message` is what may
    be sent, and refuses when anything is missing."""

    preview: str
    missing: tuple[str, ...]
    links: tuple[str, ...]
    coupons: tuple[str, ...] = ()  # the coupon codes it carries, in order

    @property
    def coupon_code(self) -> str:
        """The coupon code the text is recorded with (the first one; "" none)."""
        return self.coupons[0] if self.coupons else ""

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def message(self) -> str:
        if self.missing:
            raise MissingValues(self.missing)
        return self.preview


LinkMaker = Callable[[str], str]


def render(template: ParsedTemplate, context: RenderContext, link_for: LinkMaker) -> Rendering:
    """Fills in template; link_for turns a target URL into the tracked short link to send."""
    out: list[str] = []
    missing: list[str] = []
    links: list[str] = []
    coupons: list[str] = []
    for part in template.parts:
        if isinstance(part, Text):
            out.append(part.value)
        elif isinstance(part, Link):
            links.append(part.url)
            out.append(link_for(part.url))
        elif isinstance(part, Coupon):
            coupons.append(part.code)
            out.append(part.code)
        else:
            value = context.lookup(part.name) or part.fallback
            if value:
                out.append(value)
            else:
                missing.append(part.name)
                out.append("{{" + part.name + "}}")
    return Rendering("".join(out), tuple(dict.fromkeys(missing)), tuple(links), tuple(coupons))
