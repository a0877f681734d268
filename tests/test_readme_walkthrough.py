"""The README's "Your first sequence", run word for word against a real `reengage up`: a new
user's first day, from a CSV of customers to a first text, a reply and the enrollment's story.

The commands run in a folder of their own (not the stack's), with no REENGAGE_* variable: they
find the running stack the way a user's shell does (its record in the user's state dir). Every
shell block of the section runs as written; what each prints is checked against what the
README says it shows. Read-only commands (`outbox`, `enrollments show`) are run again until
what they show has happened (the first text is sent a moment after `enroll` returns).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.stack_support import (
    StartStack,
    ports_env,
    start_stack_fixture,  # noqa: F401  (the start_stack fixture)
)

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Your first sequence"
NEW_YORK = ZoneInfo("America/New_York")


def walkthrough_blocks() -> list[str]:
    """The shell blocks of the README's walk-through, in order."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index(SECTION)
    end = readme.index("\n## ", start + len(SECTION))
    return re.findall(r"```sh\n(.*?)```", readme[start:end], re.S)


@dataclass
class Shell:
    """A user's shell: their own folder with the project's `.venv`, their home, no settings."""

    folder: Path
    env: dict[str, str]

    def run(self, block: str) -> tuple[int, str]:
        done = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", block],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return done.returncode, done.stdout + done.stderr

    def until(self, block: str, shows: re.Pattern[str], timeout: float = 60) -> str:
        """Runs a read-only block again until its output matches (or fails with the last)."""
        deadline = time.monotonic() + timeout
        while True:
            code, out = self.run(block)
            assert code == 0, out
            if shows.search(out) or time.monotonic() > deadline:
                return out
            time.sleep(1)


def in_send_window(now: datetime) -> bool:
    """Whether the demo location's window (09:00-20:00 New York, every day) is open, with a
    minute's margin either side: a walk-through run at its edge proves nothing either way."""
    local = now.astimezone(NEW_YORK)
    minutes = local.hour * 60 + local.minute
    if 9 * 60 - 2 <= minutes <= 9 * 60 + 2 or 20 * 60 - 3 <= minutes <= 20 * 60 + 1:
        pytest.skip("run at the edge of the send window: the first text may go either way")
    return 9 * 60 <= minutes < 20 * 60


def test_the_readme_walkthrough_runs_word_for_word(tmp_path: Path, start_stack: StartStack) -> None:
    blocks = walkthrough_blocks()
    assert len(blocks) == 8, "the walk-through's steps are its shell blocks"
    env = ports_env(tmp_path / "stack" / ".reengage")
    stack = start_stack(env=env)
    stack.wait_healthy()

    user = tmp_path / "user"
    user.mkdir()
    (user / ".venv").symlink_to(ROOT / ".venv")  # `.venv/bin/reengage` as in a clone
    shell_env = {k: v for k, v in env.items() if not k.startswith("REENGAGE_")}
    shell_env.update(COLUMNS="100", NO_COLOR="1", TERM="dumb")
    shell = Shell(user, shell_env)
    assert not any(k.startswith("REENGAGE_") for k in shell.env)
    assert os.path.samefile(shell.env["HOME"], env["HOME"])  # where `up` recorded itself

    # 1. import: the contacts created are named, with their ids
    code, out = shell.run(blocks[0])
    assert code == 0, out
    assert "+12125550142" in out and "+12125550143" in out, out
    assert re.search(r"created\D*2", out), out

    # 2. templates: created, and `show` gives encoding and segments
    code, out = shell.run(blocks[1])
    assert code == 0, out
    assert "first-hello" in out and "come-back" in out, out
    assert "GSM-7" in out, out

    # 3. the sequence from its YAML file
    code, out = shell.run(blocks[2])
    assert code == 0, out
    assert "win-back" in out, out

    # 4. the simulation: Dana's own first text, with the brand and the opt-out line
    code, out = shell.run(blocks[3])
    assert code == 0, out
    flat = " ".join(out.split())
    assert "Demo Brand" in flat and "Dana" in flat and "STOP" in flat, out
    assert "nothing is sent" in flat, out

    # 5. enroll, then the outbox: the first texts, or nothing yet outside the window
    window_open = in_send_window(datetime.now(NEW_YORK))
    enroll, outbox = blocks[4].strip().splitlines()
    code, out = shell.run(enroll)
    assert code == 0, out
    assert re.search(r"enrolled\D*2", out), out
    if window_open:
        out = shell.until(outbox, re.compile(r"Dana.*\n?(.*\n)*.*Sam|Sam.*\n?(.*\n)*.*Dana"))
        flat = " ".join(out.split())
        assert "Hi Dana, we miss you at" in flat and "Hi Sam" in flat, out
        assert "Demo Brand" in flat and "Reply STOP to opt out" in flat, out
        assert "come-back" not in flat and "coffee is on us" not in flat, out  # 3 days later
    else:
        code, out = shell.run(outbox)
        assert code == 0 and "nothing sent yet" in out, out

    # 6. Dana's reply comes in through the webhook's path
    code, out = shell.run(blocks[5])
    assert code == 0, out
    assert "received as reply" in out, out
    assert "replied" in out, out

    # 7. her enrollment's story: exited `replied`, with its history in New York time
    story = shell.until(blocks[6], re.compile(r"exit: replied"))
    assert re.search(r"status\s+exited", story), story
    assert re.search(r"exit reason\s+replied", story), story
    assert "exit: replied" in story, story
    assert re.search(r"\d{2}:\d{2}(:\d{2})? E[SD]T \(\d{2}:\d{2}(:\d{2})? UTC\)", story), story
    if window_open:
        assert re.search(r"step 0 sent", story), story
    else:
        assert re.search(r"defer", story), story

    # 8. the dashboard: the link signs the demo's brand admin in once, and the location's
    # page counts the two enrollments
    code, out = shell.run(blocks[7])
    assert code == 0, out
    # the stack's REENGAGE_PUBLIC_URL (the default) starts it; the stack listens on its own port
    link = re.search(r"http://localhost:8080/dashboard/sign-in/([A-Za-z0-9_-]{43})", out)
    assert link, out
    token = link.group(1)
    base = f"http://127.0.0.1:{env['REENGAGE_HTTP_PORT']}"
    with httpx.Client(base_url=base, follow_redirects=False) as browser:
        assert browser.get(f"/dashboard/sign-in/{token}").status_code == 200
        signed = browser.post("/dashboard/sign-in", data={"token": token})
        assert signed.status_code == 303, signed.text
        assert browser.get("/dashboard").headers["location"] == "/dashboard/brand"
        page = browser.get("/dashboard/locations/downtown")
        assert page.status_code == 200 and "Downtown" in page.text, page.text
        assert 'data-measure="enrolled" data-value="2"' in page.text, page.text
        browser.cookies.clear()
        assert browser.post("/dashboard/sign-in", data={"token": token}).status_code == 403

    # the user's folder holds what the walk-through wrote, nothing of the stack's
    assert sorted(p.name for p in user.iterdir()) == [".venv", "customers.csv", "win-back.yaml"]
