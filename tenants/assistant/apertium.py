"""The `apertium` provider: offline machine translation en<->es, drafts only.

Debian's `apertium` runs the pipeline and `apertium-eng-spa` holds the language pair (modes
`eng-spa` and `spa-eng`); the project's setup installs both. Each translation is one
subprocess (`apertium -u MODE`: `-u` drops the `*` marks of unknown words), text on stdin and the
translation on stdout. `apertium` is a shell script running a pipeline of programs, so each run
is a session of its own, and at the settings' timeout (one deadline for the whole translation,
retries included) its whole process group is killed and reaped: killing the shell alone
leaves the pipeline running and holding the pipes. At most RUNS_AT_ONCE runs go at a time.

Apertium cannot be told to leave text alone, so the protected tokens are masked first with
sentinels it passes through as unknown words ("ZQXA", "ZQXB", ...) and put back after. It reads
text without punctuation across line breaks as one sentence, so the text goes in one line per
paragraph (lines joined by blank lines, which it keeps) and comes back split the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import signal
import string
import weakref
from collections.abc import Callable

from tenants.assistant.providers import AssistantUnavailable, Goal, worksheet
from tenants.assistant.tokens import mask
from tenants.core.errors import FieldViolation, InvalidArgument

PACKAGE = "apertium-eng-spa"
MODES = {("en", "es"): "eng-spa", ("es", "en"): "spa-eng"}
_INSTALL = (
    f"install the Debian packages apertium and {PACKAGE} (apt-get install apertium {PACKAGE})"
)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_REAP_SECONDS = 5.0
RUNS_AT_ONCE = 4  # apertium runs in flight in this process (each a pipeline of ~8 programs)
_RUNS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def _runs() -> asyncio.Semaphore:
    """The process's bound on concurrent apertium runs (one semaphore per event loop: an
    asyncio semaphore belongs to the loop it first waited on)."""
    loop = asyncio.get_running_loop()
    runs = _RUNS.get(loop)
    if runs is None:
        runs = _RUNS[loop] = asyncio.Semaphore(RUNS_AT_ONCE)
    return runs


def _sentinel_maker(text: str) -> Callable[[int], str]:
    """Sentinels that appear nowhere in text: prefix + A, B, ..., Z, BA, BB, ..."""
    upper = text.upper()
    prefix = next(p for p in ("ZQX", "XZQ", "QXZ", "ZXQZ", "QZXQ") if p not in upper)

    def sentinel(i: int) -> str:
        letters = ""
        while True:
            i, digit = divmod(i, 26)
            letters = string.ascii_uppercase[digit] + letters
            if i == 0:
                return prefix + letters

    return sentinel


class ApertiumProvider:
    """Translates en<->es with the apertium command; does not rewrite."""

    name = "apertium"

    def __init__(self, command: str = "apertium", timeout_seconds: float = 10.0) -> None:
        self.command = shlex.split(command) or ["apertium"]
        self.timeout_seconds = timeout_seconds

    async def rewrite(self, text: str, goals: tuple[Goal, ...], max_segments: int) -> str:
        raise AssistantUnavailable(
            "the apertium provider translates but does not rewrite: choose the rules rewriter "
            "(or openai) in the assistant settings",
            provider=self.name,
        )

    async def translate(self, text: str, source: str, target: str) -> str:
        source_language = source.split("-", 1)[0].lower()
        target_language = target.split("-", 1)[0].lower()
        mode = MODES.get((source_language, target_language))
        if mode is None:
            field = "source_language" if source_language not in ("en", "es") else "target_language"
            raise InvalidArgument(
                [FieldViolation(field, "apertium translates only between en and es")]
            )
        sheet = worksheet()
        masked = mask(text, sheet.protected_hits(text), _sentinel_maker(text))
        try:
            async with asyncio.timeout(self.timeout_seconds):
                translated = await self._translate_lines(masked.text, mode)
        except TimeoutError:
            raise AssistantUnavailable(
                f"apertium did not answer within {self.timeout_seconds:g} s",
                provider=self.name,
            ) from None
        sheet.note(f"machine-translated by apertium ({mode}): have a speaker read it")
        return masked.unmask(translated)

    async def _translate_lines(self, text: str, mode: str) -> str:
        """text translated line by line (one apertium run for all lines when it keeps them)."""
        lines = text.split("\n")
        filled = [i for i, line in enumerate(lines) if line.strip()]
        if not filled:
            return text
        answer = await self._run(mode, "\n\n".join(lines[i].strip() for i in filled))
        pieces = _PARAGRAPH_BREAK.split(answer.strip("\n"))
        if len(pieces) != len(filled):
            pieces = [await self._run(mode, lines[i].strip()) for i in filled]
        out = list(lines)
        for i, piece in zip(filled, pieces, strict=True):
            line = lines[i]
            lead = line[: len(line) - len(line.lstrip())]
            trail = line[len(line.rstrip()) :]
            piece = _without_marks(piece.strip(), line)
            if "  " not in line:
                piece = re.sub(r" {2,}", " ", piece)
            out[i] = lead + piece + trail
        return "\n".join(out)

    async def _run(self, mode: str, text: str) -> str:
        async with _runs():
            try:
                process = await asyncio.create_subprocess_exec(
                    *self.command,
                    "-u",
                    mode,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    start_new_session=True,  # its pipeline is one process group, killed as one
                )
            except (FileNotFoundError, PermissionError, NotADirectoryError):
                raise AssistantUnavailable(
                    f"apertium is not installed (no command {self.command[0]!r}): {_INSTALL}",
                    provider=self.name,
                    package=PACKAGE,
                ) from None
            try:
                out, err = await process.communicate(text.encode())
            except BaseException:  # the deadline (or the caller) cancelled the run
                await _ended(process)
                raise
        if process.returncode != 0:
            problem = err.decode(errors="replace").strip().splitlines()
            first = problem[0][:200] if problem else "no message"
            if "does not exist" in first or "No such file" in first:
                raise AssistantUnavailable(
                    f"the apertium language pair {mode} is not installed ({first}): {_INSTALL}",
                    provider=self.name,
                    package=PACKAGE,
                )
            raise AssistantUnavailable(
                f"apertium failed (exit {process.returncode}): {first}", provider=self.name
            )
        return out.decode(errors="replace")


async def _ended(process: asyncio.subprocess.Process) -> None:
    """The run's whole process group killed (the `apertium` shell and the pipeline it
    started) and the shell reaped, shielded from the cancellation that got here. The wait is
    bounded too: a program that left the group could hold the pipes open forever."""
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group has ended
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(process.wait()), _REAP_SECONDS)


def _without_marks(translated: str, source: str) -> str:
    """translated without apertium's marks for words it could not generate (#) or translate
    (@), unless the source itself had those characters."""
    for mark in "#@":
        if mark not in source:
            translated = re.sub(rf"{mark}(?=\w)", "", translated)
    return translated
