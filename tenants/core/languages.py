"""Languages: the tags a contact's preference and a template's variants are written in, and the
guess that a reply is in Spanish.

A tag is a subset of BCP-47: a primary language subtag of 2-3 letters (`en`, `es`, `haw`), then
optionally a script of 4 letters (`zh-Hant`) and/or a region of 2 letters or 3 digits (`es-MX`,
`es-419`). Case does not matter on the way in; `normalize` writes the conventional case
(`es-MX`, `zh-Hant-TW`). Extensions, variants and private-use tags are refused: nothing the
platform does depends on them, and a narrow form keeps imports from storing guesses.

`SUPPORTED` are the languages the platform's own texts (opt-out and START confirmations, the
HELP answer: `tenants.content.service_texts`) are written in; any other language falls back to
`DEFAULT_LANGUAGE`.
"""

from __future__ import annotations

import re
import unicodedata

DEFAULT_LANGUAGE = "en"

# the languages the platform's own texts exist in
SUPPORTED = ("en", "es")

_TAG = re.compile(
    r"(?P<language>[A-Za-z]{2,3})(?:-(?P<script>[A-Za-z]{4}))?(?:-(?P<region>[A-Za-z]{2}|[0-9]{3}))?"
)

_HINT = "use a BCP-47 language tag such as en, es or es-MX"


def language_problem(tag: str) -> str | None:
    """What is wrong with tag as a language tag, None when it is one. The empty string is not
    a tag (a contact's "no preference" is checked by its caller)."""
    if not tag.strip():
        return f"is empty: {_HINT}"
    if tag != tag.strip():
        return f"has spaces around it: {_HINT}"
    if "_" in tag and _TAG.fullmatch(tag.replace("_", "-")):
        return f"{tag[:20]!r} separates with '_': write {normalize(tag.replace('_', '-'))!r}"
    if not _TAG.fullmatch(tag):
        return f"{tag[:20]!r} is not a language tag: {_HINT}"
    return None


def normalize(tag: str) -> str:
    """tag in its conventional case (`ES-mx` → `es-MX`); "" stays "" (no preference). Raises
    ValueError for a tag language_problem refuses."""
    if tag == "":
        return ""
    problem = language_problem(tag)
    match = _TAG.fullmatch(tag)
    if problem or match is None:
        raise ValueError(f"language tag {problem}")
    parts = [match["language"].lower()]
    if match["script"]:
        parts.append(match["script"].title())
    if match["region"]:
        parts.append(match["region"].upper())
    return "-".join(parts)


def primary(tag: str) -> str:
    """The primary language subtag, lower case: `es-MX` → `es`; "" → ""."""
    return tag.split("-", 1)[0].lower()


def service_language(tag: str) -> str:
    """The language the platform's own texts use for a contact preferring tag: its primary
    subtag when the texts exist in it, DEFAULT_LANGUAGE otherwise (also for "" or a bad tag)."""
    language = primary(tag.strip())
    return language if language in SUPPORTED else DEFAULT_LANGUAGE


# Words that say "Spanish" or "English" in short replies. Words both languages use in texts
# ("no", "a", "me", "ok", "he", "son", "final"), and short Spanish words English texting uses
# too ("u", "ya", "mi", "la", "al", "es", "en", "si", "tu": "Love u", "See ya", "LA") are in
# neither list: they prove nothing.
_SPANISH_WORDS = frozenset(
    """
    los las un una unos unas del de que qué está están esta este esto
    estoy estamos soy eres fue ser por para con sin pero muy más mas también tambien sí
    bien bueno buena buenos buenas gracias hola adiós adios favor quiero quisiera puedo puede
    podemos tengo tiene tienen necesito cita citas mañana manana hoy ayer cuándo cuando dónde
    donde cómo como cuánto cuanto cuál cual porque usted ustedes nosotros ellos ella sus
    tú yo mis nos les hay claro vale listo perfecto nada todo todos ahora luego
    entonces nunca siempre aquí aqui ahí ahi mucho muchas muchos pronto gusto llamar llamada
    precio semana día dia días dias tardes noches señor señora disculpe perdón perdon
    """.split()
)

_ENGLISH_WORDS = frozenset(
    """
    the and is are was were be been you your yours i i'm im it it's its to of for with this
    that these those what when where how why who yes yeah yep thanks thank please can could
    would will do does did don't dont not my we our us they them at on in from about just
    there have has had get got book booked time hi hello hey sure want need tomorrow today
    tonight appointment good great morning afternoon evening sorry call week day much more
    also maybe cancel schedule reschedule available price
    """.split()
)

# words no English reply uses: each is evidence enough on its own (it counts 2)
_SPANISH_ONLY = frozenset(
    "hola gracias adiós adios favor quiero quisiera mañana manana buenos buenas usted"
    " necesito tengo voy siento vemos".split()
)
_ANY_SPANISH = _SPANISH_WORDS | _SPANISH_ONLY
SPANISH_EVIDENCE = 2  # what a text needs to look Spanish (and more than its English evidence)

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


def _accented(word: str) -> bool:
    """True when word has a letter Spanish writes and English does not (á é í ó ú ü ñ)."""
    return any(c in "áéíóúüñ" for c in word)


def spanish_score(text: str) -> tuple[int, int]:
    """(Spanish evidence, English evidence) in text, counted as looks_spanish counts it."""
    folded = unicodedata.normalize("NFC", text).lower().replace("\u2019", "'")
    words = _WORD.findall(folded)
    spanish = sum(2 if w in _SPANISH_ONLY else 1 for w in words if w in _ANY_SPANISH)
    spanish += sum(1 for w in words if _accented(w))
    if "¿" in folded or "¡" in folded:
        spanish += 2
    english = sum(1 for w in words if w in _ENGLISH_WORDS)
    return spanish, english


def looks_spanish(text: str) -> bool:
    """A deterministic guess that a contact's reply is written in Spanish.

    Evidence for Spanish: each word on a list of common Spanish function and reply words (`de`,
    `que`, `gracias`, `sí`, `quiero`, `mañana`, …), each word with á é í ó ú ü or ñ (a word can
    count twice: `sí`), and 2 for an opening ¿ or ¡. Evidence for English: each word on a list
    of common English ones (`the`, `yes`, `thanks`, `tomorrow`, …). Words both languages use
    (`no`, `ok`, `a`, `me`) count for neither, and case does not matter.

    A word only Spanish replies use (`hola`, `gracias`, `mañana`, …) counts 2.

    The text looks Spanish when the Spanish evidence is at least SPANISH_EVIDENCE (2) and more
    than the English: "Sí, gracias" and "Hola" do; "Yes thanks", "STOP", "Ok", "👍", "Love u",
    "See ya", "Mi bad" and "LA" do not, nor does an English sentence with one Spanish word
    ("Can I get a cita tomorrow").
    """
    spanish, english = spanish_score(text)
    return spanish >= SPANISH_EVIDENCE and spanish > english
