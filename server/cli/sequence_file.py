"""The sequence file of `reengage sequences create|update --file`: YAML a person writes, read
into a `reengage.v1.Sequence` (and written back by `sequences show --yaml`).

    id: win-back                      # [a-z0-9-], starting with a letter
    display_name: Win back quiet customers
    trigger:                          # optional: without it, contacts enter only by enroll
      inactive_for: 30d               # or `activity: cart_abandoned`
      signals: [reply, click, purchase]
    exit_on: [reply, click]           # reply and opt_out always end an enrollment
    steps:
      - template: first-hello         # an id (or full name) of a template the sequence may use
        wait: 0
      - template: win-back-2
        wait: 3d                      # 90m, 48h, 3d, 2w, 1d12h, or ISO 8601 (PT48H, P3D)
        requires_approval: true

Every problem names the file, the line, the key path (`steps[1].wait`) and what is accepted;
all of a file's problems are reported at once. The file is read from YAML's node tree
(`yaml.compose`), not its constructed values: nodes carry their line, and a scalar's text is
taken as written (YAML 1.1 would read `9:00` as the number 540 and `no` as false).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from google.protobuf import duration_pb2

from reengage.v1 import sequences_pb2 as pb
from reengage.v1 import tenants_pb2
from server.cli.api import CliError
from server.cli.display import last_segment

MINUTE = 60
HOUR = 60 * MINUTE
DAY = 24 * HOUR
WEEK = 7 * DAY
DURATIONS = "a number and a unit (s, m, h, d, w): 90m, 48h, 3d, 2w, 1d12h; 0; or ISO 8601: PT48H"
# the longest duration a file may name: the server's longest limit (a cooldown, an inactivity
# trigger: 3650 days; a wait: 366 days), which it checks with its own messages
MAX_DURATION_DAYS = 3650
MAX_INT32 = 2**31 - 1
_HUMAN = re.compile(
    r"(?:(\d+)\s*w)?\s*(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*(?:(\d+)\s*s)?"
)
_ISO = re.compile(r"P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?", re.IGNORECASE)
_TRUE = {"true", "yes", "on"}
_FALSE = {"false", "no", "off"}

EXITS = {
    "reply": pb.EXIT_EVENT_REPLY,
    "opt_out": pb.EXIT_EVENT_OPT_OUT,
    "click": pb.EXIT_EVENT_CLICK,
    "purchase": pb.EXIT_EVENT_PURCHASE,
    "appointment": pb.EXIT_EVENT_APPOINTMENT,
}
SIGNALS = {
    "reply": pb.ENGAGEMENT_SIGNAL_REPLY,
    "click": pb.ENGAGEMENT_SIGNAL_CLICK,
    "purchase": pb.ENGAGEMENT_SIGNAL_PURCHASE,
}
WAIT_FROM = {"previous_step": pb.WAIT_FROM_PREVIOUS_STEP, "enrollment": pb.WAIT_FROM_ENROLLMENT}
DAYS = {
    "mon": tenants_pb2.DAY_OF_WEEK_MONDAY,
    "tue": tenants_pb2.DAY_OF_WEEK_TUESDAY,
    "wed": tenants_pb2.DAY_OF_WEEK_WEDNESDAY,
    "thu": tenants_pb2.DAY_OF_WEEK_THURSDAY,
    "fri": tenants_pb2.DAY_OF_WEEK_FRIDAY,
    "sat": tenants_pb2.DAY_OF_WEEK_SATURDAY,
    "sun": tenants_pb2.DAY_OF_WEEK_SUNDAY,
}
_DAY_NAMES = {
    "monday": "mon",
    "tuesday": "tue",
    "wednesday": "wed",
    "thursday": "thu",
    "friday": "fri",
    "saturday": "sat",
    "sunday": "sun",
}
TOP_KEYS = (
    "id",
    "display_name",
    "steps",
    "trigger",
    "exit_on",
    "priority",
    "interrupt_lower_priority",
    "cooldown",
    "send_window",
    "frequency_cap",
)
STEP_KEYS = ("template", "wait", "wait_from", "requires_approval", "skip_if_activity")
TRIGGER_KEYS = ("inactive_for", "signals", "activity")
WINDOW_KEYS = ("start", "end", "days")
CAP_KEYS = ("max_messages", "period")

# a server's field violation (`sequence.steps[1].wait`) → the key path in the file
_SERVER_FIELDS = (
    ("sequence_id", "id"),
    ("sequence.entry_trigger.inactivity.days", "trigger.inactive_for"),
    ("sequence.entry_trigger.inactivity.signals", "trigger.signals"),
    ("sequence.entry_trigger.activity_kind", "trigger.activity"),
    ("sequence.entry_trigger", "trigger"),
    ("sequence.exit_events", "exit_on"),
    ("sequence.send_window.start_time", "send_window.start"),
    ("sequence.send_window.end_time", "send_window.end"),
    ("sequence.", ""),
)


def parse_duration(text: str) -> int:
    """Seconds of a human duration (`90m`, `48h`, `3d`, `2w`, `1d12h`, `0`) or an ISO 8601 one
    (`PT48H`, `P3D`, `P1W`); ValueError saying what is accepted."""
    value = text.strip()
    if value == "0":
        return 0
    if value.isdigit():
        raise ValueError(f"{value!r} has no unit: write {value}s, {value}m, {value}h or {value}d")
    for pattern in (_HUMAN, _ISO):
        match = pattern.fullmatch(value.lower() if pattern is _HUMAN else value)
        if match and any(match.groups()):
            units = (WEEK, DAY, HOUR, MINUTE, 1)
            too_long = ValueError(
                f"{value!r} is too long: a duration is at most {MAX_DURATION_DAYS} days (a wait"
                " at most 366 days)"
            )
            if any(n and len(n) > 12 for n in match.groups()):  # int() of it would be slow
                raise too_long
            seconds = sum(int(n) * unit for n, unit in zip(match.groups(), units, strict=True) if n)
            if seconds > MAX_DURATION_DAYS * DAY:
                raise too_long
            return seconds
    if re.fullmatch(r"P.*[YM].*", value, re.IGNORECASE) and "T" not in value.upper():
        raise ValueError(f"{value!r}: months and years vary in length; write days (P30D, 30d)")
    raise ValueError(f"{value!r} is not a duration: use {DURATIONS}")


def format_duration(seconds: int) -> str:
    """`3d`, `1d12h`, `90m` → `1h30m`; `0` for none (what parse_duration reads back)."""
    if seconds <= 0:
        return "0"
    parts = []
    for unit, size in (("d", DAY), ("h", HOUR), ("m", MINUTE), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)


@dataclass(frozen=True)
class Problem:
    line: int  # 1-based
    path: str  # e.g. steps[1].wait
    message: str


@dataclass
class SequenceFile:
    """A sequence file as read: the sequence for the API (step templates as written, resolved
    to names by the caller), and the line of every key path for later messages."""

    path: Path
    sequence_id: str
    sequence: pb.Sequence
    lines: dict[str, int] = field(default_factory=dict)

    def line_of(self, key_path: str) -> int:
        """The line of key_path, or of its nearest enclosing key that has one."""
        path = key_path
        while path:
            if path in self.lines:
                return self.lines[path]
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return 1

    def problem(self, key_path: str, message: str) -> str:
        """`file:line: key.path: message`."""
        return f"{self.path}:{self.line_of(key_path)}: {key_path}: {message}"

    def server_field(self, proto_field: str) -> str:
        """A server field violation's field as a key path of this file."""
        for proto, key in _SERVER_FIELDS:
            if proto_field.startswith(proto):
                rest = proto_field[len(proto) :]
                path = key + rest
                break
        else:
            path = proto_field
        path = re.sub(r"\.skip_conditions$", ".skip_if_activity", path)
        path = re.sub(r"\.skip_if_activity_since_enrollment$", ".skip_if_activity", path)
        path = re.sub(r"\.require_approval$", ".requires_approval", path)
        return path


class _Reader:
    """Walks the node tree, collecting problems with their lines."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.lines: dict[str, int] = {}

    def fail(self, node: yaml.Node, path: str, message: str) -> None:
        self.problems.append(Problem(node.start_mark.line + 1, path, message))

    def mapping(
        self, node: yaml.Node, path: str, keys: tuple[str, ...]
    ) -> dict[str, tuple[str, yaml.Node]] | None:
        """{key: (key path, value node)}; unknown and repeated keys are problems."""
        self.lines[path] = node.start_mark.line + 1
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, path or "(the file)", f"must be a mapping of {', '.join(keys)}")
            return None
        found: dict[str, tuple[str, yaml.Node]] = {}
        for key_node, value in node.value:
            key = str(key_node.value)
            where = f"{path}.{key}" if path else key
            if key not in keys:
                close = difflib.get_close_matches(key, keys, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                self.fail(key_node, where, f"unknown key; {hint}known keys: {', '.join(keys)}")
                continue
            if key in found:
                self.fail(key_node, where, "is given twice")
                continue
            self.lines[where] = key_node.start_mark.line + 1
            found[key] = (where, value)
        return found

    def text(self, node: yaml.Node, path: str) -> str | None:
        if not isinstance(node, yaml.ScalarNode):
            self.fail(node, path, "must be a single value, not a list or a mapping")
            return None
        if node.tag == "tag:yaml.org,2002:null":
            self.fail(node, path, "has no value")
            return None
        return str(node.value)

    def integer(self, node: yaml.Node, path: str) -> int | None:
        raw = self.text(node, path)
        if raw is None:
            return None
        if not re.fullmatch(r"-?\d+", raw.strip()):
            self.fail(node, path, f"{raw!r} is not a whole number")
            return None
        digits = raw.strip().lstrip("-").lstrip("0")
        if len(digits) > 10 or abs(int(raw)) > MAX_INT32:
            self.fail(node, path, f"{raw!r} is out of range (at most {MAX_INT32:,})")
            return None
        return int(raw)

    def boolean(self, node: yaml.Node, path: str) -> bool | None:
        raw = self.text(node, path)
        if raw is None:
            return None
        if raw.lower() in _TRUE | _FALSE:
            return raw.lower() in _TRUE
        self.fail(node, path, f"{raw!r} is not true or false")
        return None

    def duration(self, node: yaml.Node, path: str) -> int | None:
        raw = self.text(node, path)
        if raw is None:
            return None
        try:
            return parse_duration(raw)
        except ValueError as exc:
            self.fail(node, path, str(exc))
            return None

    def items(self, node: yaml.Node, path: str) -> list[tuple[str, yaml.Node]]:
        """A list's items with their paths; a lone scalar counts as a list of one."""
        if isinstance(node, yaml.ScalarNode) and node.value:
            return [(f"{path}[0]", node)]
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, path, "must be a list, e.g. [reply, click]")
            return []
        return [(f"{path}[{i}]", item) for i, item in enumerate(node.value)]

    def choices(self, node: yaml.Node, path: str, allowed: dict[str, int]) -> list[int]:
        chosen: list[int] = []
        for where, item in self.items(node, path):
            raw = self.text(item, where)
            if raw is None:
                continue
            word = raw.strip().lower()
            if word not in allowed:
                self.fail(item, where, f"{raw!r} is not one of {', '.join(allowed)}")
            elif allowed[word] not in chosen:
                chosen.append(allowed[word])
        return chosen


def _step(r: _Reader, node: yaml.Node, path: str) -> pb.Step | None:
    if not isinstance(node, yaml.MappingNode):
        r.fail(node, path, "a step is a mapping: `- template: first-hello` (then wait: 3d, ...)")
        return None
    keys = r.mapping(node, path, STEP_KEYS)
    if keys is None:
        return None
    step = pb.Step()
    if "template" not in keys:
        r.fail(node, path, "needs a template (its id, e.g. `template: first-hello`)")
    else:
        step.template = (r.text(keys["template"][1], keys["template"][0]) or "").strip()
    readers: dict[str, Callable[[yaml.Node, str], None]] = {
        "wait": lambda n, p: _set_duration(step.wait, r.duration(n, p)),
        "wait_from": lambda n, p: _set_wait_from(r, step, n, p),
        "requires_approval": lambda n, p: setattr(step, "require_approval", bool(r.boolean(n, p))),
        "skip_if_activity": lambda n, p: step.skip_if_activity_since_enrollment.extend(
            t for w, i in r.items(n, p) if (t := r.text(i, w))
        ),
    }
    for key, read in readers.items():
        if key in keys:
            read(keys[key][1], keys[key][0])
    return step


def _set_duration(target: duration_pb2.Duration, seconds: int | None) -> None:
    if seconds is not None:
        target.seconds = seconds


def _set_wait_from(r: _Reader, step: pb.Step, node: yaml.Node, path: str) -> None:
    raw = r.text(node, path)
    if raw is not None:
        if raw.strip() in WAIT_FROM:
            step.wait_from = WAIT_FROM[raw.strip()]
        else:
            r.fail(node, path, f"{raw!r} is not one of {', '.join(WAIT_FROM)}")


def _trigger(r: _Reader, node: yaml.Node, path: str, sequence: pb.Sequence) -> None:
    keys = r.mapping(node, path, TRIGGER_KEYS)
    if keys is None:
        return
    if ("inactive_for" in keys) == ("activity" in keys):
        r.fail(node, path, "needs one of `inactive_for: 30d` or `activity: cart_abandoned`")
        return
    if "activity" in keys:
        if "signals" in keys:
            r.fail(keys["signals"][1], keys["signals"][0], "goes with inactive_for only")
        where, value = keys["activity"]
        sequence.entry_trigger.activity_kind = (r.text(value, where) or "").strip()
        return
    where, value = keys["inactive_for"]
    seconds = r.duration(value, where)
    if seconds is not None and (seconds % DAY or not seconds):
        r.fail(value, where, "must be a whole number of days, e.g. 30d or 4w")
    signals = (
        r.choices(keys["signals"][1], keys["signals"][0], SIGNALS)
        if "signals" in keys
        else list(SIGNALS.values())
    )
    sequence.entry_trigger.inactivity.CopyFrom(
        pb.InactivityTrigger(days=(seconds or 0) // DAY, signals=signals)
    )


def _window(r: _Reader, node: yaml.Node, path: str, sequence: pb.Sequence) -> None:
    keys = r.mapping(node, path, WINDOW_KEYS)
    if keys is None:
        return
    window = tenants_pb2.SendWindow()
    for key, attr in (("start", "start_time"), ("end", "end_time")):
        if key in keys:
            raw = (r.text(keys[key][1], keys[key][0]) or "").strip()
            if raw and not re.fullmatch(r"\d{1,2}:\d{2}", raw):
                r.fail(keys[key][1], keys[key][0], f"{raw!r} is not a time: write HH:MM, 09:00")
            setattr(window, attr, raw.zfill(5) if raw else raw)
    if "days" in keys:
        for where, item in r.items(keys["days"][1], keys["days"][0]):
            raw = (r.text(item, where) or "").strip().lower()
            day = _DAY_NAMES.get(raw, raw)
            if day in DAYS:
                window.days.append(DAYS[day])
            elif raw:
                r.fail(item, where, f"{raw!r} is not a day: mon, tue, wed, thu, fri, sat, sun")
    sequence.send_window.CopyFrom(window)


def _cap(r: _Reader, node: yaml.Node, path: str, sequence: pb.Sequence) -> None:
    keys = r.mapping(node, path, CAP_KEYS)
    if keys is None:
        return
    for key in CAP_KEYS:
        if key not in keys:
            r.fail(node, path, "needs max_messages and period, e.g. {max_messages: 2, period: 7d}")
            return
    cap = pb.FrequencyCap(max_messages=r.integer(keys["max_messages"][1], keys["max_messages"][0]))
    _set_duration(cap.period, r.duration(keys["period"][1], keys["period"][0]))
    sequence.frequency_cap.CopyFrom(cap)


def read_sequence(text: str, path: Path) -> SequenceFile:
    """The sequence in a file's text; CliError listing every problem (file:line: key: what)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        what = getattr(exc, "problem", None) or str(exc)
        context, since = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and since is not None:
            what += f" ({context} started on line {since.line + 1})"
        raise CliError(f"{path}{line}: not valid YAML: {what}") from None
    if root is None:
        raise CliError(f"{path}: the file is empty; it needs at least `id` and `steps`")
    r = _Reader()
    keys = r.mapping(root, "", TOP_KEYS)
    sequence = pb.Sequence()
    sequence_id = ""
    if keys is not None:
        for needed in ("id", "steps"):
            if needed not in keys:
                r.fail(root, needed, "is required")
        if "id" in keys:
            sequence_id = (r.text(keys["id"][1], keys["id"][0]) or "").strip()
        display = keys.get("display_name")
        written = r.text(display[1], display[0]) if display else None
        sequence.display_name = (written or "").strip() or sequence_id
        if "steps" in keys:
            where, value = keys["steps"]
            items = r.items(value, where) if not isinstance(value, yaml.ScalarNode) else []
            if not items:
                r.fail(value, where, "must be a list of at least one step (- template: ...)")
            for step_path, item in items:
                step = _step(r, item, step_path)
                if step is not None:
                    sequence.steps.append(step)
        if "trigger" in keys:
            _trigger(r, keys["trigger"][1], keys["trigger"][0], sequence)
        if "exit_on" in keys:
            exits = r.choices(keys["exit_on"][1], keys["exit_on"][0], EXITS)
            sequence.exit_events.extend(exits)
        if "priority" in keys:
            sequence.priority = r.integer(keys["priority"][1], keys["priority"][0]) or 0
        if "interrupt_lower_priority" in keys:
            where, value = keys["interrupt_lower_priority"]
            sequence.interrupt_lower_priority = bool(r.boolean(value, where))
        if "cooldown" in keys:
            _set_duration(sequence.cooldown, r.duration(keys["cooldown"][1], keys["cooldown"][0]))
        if "send_window" in keys:
            _window(r, keys["send_window"][1], keys["send_window"][0], sequence)
        if "frequency_cap" in keys:
            _cap(r, keys["frequency_cap"][1], keys["frequency_cap"][0], sequence)
    if r.problems:
        ordered = sorted(r.problems, key=lambda p: p.line)
        raise CliError("\n".join(f"{path}:{p.line}: {p.path}: {p.message}" for p in ordered))
    return SequenceFile(path, sequence_id, sequence, r.lines)


def load_sequence_file(path: Path) -> SequenceFile:
    """read_sequence of a file on disk; a missing or unreadable file is a CliError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"{path}: cannot be read ({exc})") from None
    return read_sequence(text, path)


def to_yaml(sequence_id: str, s: pb.Sequence, scope: str) -> str:
    """The sequence in the file format (what `sequences update --file` reads back). Templates
    are written as ids when they live at scope's franchisor or at scope itself."""
    franchisor = "/".join(scope.split("/")[:2])
    near = {f"{franchisor}/templates", f"{scope}/templates"}

    def template(name: str) -> str:
        return last_segment(name) if name.rsplit("/", 1)[0] in near else name

    out: dict[str, object] = {"id": sequence_id, "display_name": s.display_name}
    which = s.entry_trigger.WhichOneof("trigger")
    if which == "inactivity":
        names = {v: k for k, v in SIGNALS.items()}
        out["trigger"] = {
            "inactive_for": f"{s.entry_trigger.inactivity.days}d",
            "signals": [names[x] for x in s.entry_trigger.inactivity.signals],
        }
    elif which == "activity_kind":
        out["trigger"] = {"activity": s.entry_trigger.activity_kind}
    exit_names = {v: k for k, v in EXITS.items()}
    out["exit_on"] = [exit_names[e] for e in s.exit_events if e in exit_names]
    if s.priority:
        out["priority"] = s.priority
    if s.interrupt_lower_priority:
        out["interrupt_lower_priority"] = True
    if s.cooldown.seconds:
        out["cooldown"] = format_duration(s.cooldown.seconds)
    if s.HasField("send_window"):
        day_names = {v: k for k, v in DAYS.items()}
        window: dict[str, object] = {
            "start": s.send_window.start_time,
            "end": s.send_window.end_time,
        }
        if s.send_window.days:
            window["days"] = [day_names[d] for d in s.send_window.days if d in day_names]
        out["send_window"] = window
    if s.HasField("frequency_cap"):
        out["frequency_cap"] = {
            "max_messages": s.frequency_cap.max_messages,
            "period": format_duration(s.frequency_cap.period.seconds),
        }
    steps = []
    for step in s.steps:
        item: dict[str, object] = {
            "template": template(step.template),
            "wait": format_duration(step.wait.seconds),
        }
        if step.wait_from == pb.WAIT_FROM_ENROLLMENT:
            item["wait_from"] = "enrollment"
        if step.require_approval:
            item["requires_approval"] = True
        if step.skip_if_activity_since_enrollment:
            item["skip_if_activity"] = list(step.skip_if_activity_since_enrollment)
        steps.append(item)
    out["steps"] = steps
    return yaml.safe_dump(out, sort_keys=False, allow_unicode=True, width=88)
