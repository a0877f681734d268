"""The `apertium` provider: offline en<->es translation by Debian's apertium (packages
`apertium` and `apertium-eng-spa`), with the protected tokens masked and checked. The real
translations skip when apertium is not installed (they fail instead with
REENGAGE_REQUIRE_APERTIUM=1, as .ci/run sets); a fake command stands in for a missing, hanging,
failing, token-eating or meaning-changing apertium."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import time
from pathlib import Path

import pytest

from tenants.assistant.apertium import RUNS_AT_ONCE, ApertiumProvider
from tenants.assistant.drafts import (
    AssistantSettings,
    AssistantUnavailable,
    DraftRefused,
    Goal,
    ProtectedToken,
    rewrite_message,
    translate_message,
    translator_from,
)
from tenants.core.errors import InvalidArgument
from tests.waiting import eventually

REQUIRE_APERTIUM = "REENGAGE_REQUIRE_APERTIUM"
TEXT = (
    "Hi {{contact.first_name|there}}, your appointment at Sunrise Coffee is tomorrow. "
    "Show this code at the counter: {{coupon:LATTE-5}}. Book a table at "
    "https://sunrise.example/book.\nReply STOP to opt out."
)
ROOT = Path(__file__).resolve().parent.parent


def apertium_or_skip() -> ApertiumProvider:
    if shutil.which("apertium") is not None:
        return ApertiumProvider()
    reason = (
        "the apertium tests need Debian's apertium and apertium-eng-spa "
        "(apt-get install -y --no-install-recommends apertium apertium-eng-spa)"
    )
    if os.environ.get(REQUIRE_APERTIUM) == "1":
        pytest.fail(f"{reason}; {REQUIRE_APERTIUM}=1 requires them")
    pytest.skip(reason)


def fake_command(tmp_path: Path, script: str) -> str:
    """An executable shell script standing in for apertium; its path."""
    path = tmp_path / "fake-apertium"
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


async def test_english_to_spanish_keeps_every_protected_token_and_stop() -> None:
    provider = apertium_or_skip()
    draft = await translate_message(provider, TEXT, "es", brand_name="Sunrise Coffee")
    assert draft.provider == "apertium"
    assert "mañana" in draft.text and "Hola" in draft.text
    for token in (
        "{{contact.first_name|there}}",
        "Sunrise Coffee",
        "{{coupon:LATTE-5}}",
        "https://sunrise.example/book",
        "STOP",
    ):
        assert draft.text.count(token) == 1, (token, draft.text)
    assert draft.protected == (
        ProtectedToken("placeholder", "{{contact.first_name|there}}"),
        ProtectedToken("brand_name", "Sunrise Coffee"),
        ProtectedToken("placeholder", "{{coupon:LATTE-5}}"),
        ProtectedToken("link", "https://sunrise.example/book"),
        ProtectedToken("opt_out", "Responde STOP para cancelar"),
        ProtectedToken("opt_out", "STOP"),
    )
    # the opt-out line is the standard Spanish one, on its own line as it was
    assert draft.text.count("\n") == 1
    assert draft.text.splitlines()[1] == "Responde STOP para cancelar."
    assert "Café" not in draft.text  # the brand is not translated
    assert any("apertium" in note for note in draft.notes)


async def test_spanish_to_english_and_a_regional_tag() -> None:
    provider = apertium_or_skip()
    text = "Hola {{contact.first_name|amigo}}, tu cita es mañana.\n\nResponde STOP para cancelar."
    draft = await translate_message(provider, text, "en-US", "es-MX")
    assert "{{contact.first_name|amigo}}" in draft.text
    assert draft.text.endswith("\n\nReply STOP to opt out.")
    assert "Hello" in draft.text
    assert draft.text.count("\n\n") == 1  # the blank line is kept
    assert draft.encoding == "GSM-7"


async def test_a_text_without_protected_tokens_is_just_translated() -> None:
    provider = apertium_or_skip()
    draft = await translate_message(provider, "We miss you! Come back this week.", "es")
    assert draft.protected == ()
    assert draft.text and "ZQX" not in draft.text


async def test_apertium_translates_only_between_english_and_spanish() -> None:
    provider = ApertiumProvider()
    with pytest.raises(InvalidArgument) as bad:
        await translate_message(provider, TEXT, "fr")
    assert [v.field for v in bad.value.violations] == ["target_language"]
    with pytest.raises(InvalidArgument) as bad:
        await translate_message(provider, TEXT, "es", "de")
    assert [v.field for v in bad.value.violations] == ["source_language"]


async def test_apertium_does_not_rewrite() -> None:
    with pytest.raises(AssistantUnavailable) as unavailable:
        await rewrite_message(ApertiumProvider(), TEXT, [Goal.SHORTER])
    assert "does not rewrite" in unavailable.value.message


async def test_a_missing_apertium_names_the_debian_package(tmp_path: Path) -> None:
    provider = translator_from(AssistantSettings(apertium_command=str(tmp_path / "nope")))
    with pytest.raises(AssistantUnavailable) as unavailable:
        await translate_message(provider, TEXT, "es")
    assert unavailable.value.reason == "ASSISTANT_UNAVAILABLE"
    assert "apertium-eng-spa" in unavailable.value.message
    assert unavailable.value.metadata["package"] == "apertium-eng-spa"


async def test_a_missing_language_pair_names_the_debian_package(tmp_path: Path) -> None:
    command = fake_command(
        tmp_path, 'echo "Error: Mode $2 does not exist. Try one of:" >&2\nexit 1'
    )
    provider = translator_from(AssistantSettings(apertium_command=command))
    with pytest.raises(AssistantUnavailable) as unavailable:
        await translate_message(provider, TEXT, "es")
    message = unavailable.value.message
    assert "language pair eng-spa is not installed" in message and "apertium-eng-spa" in message


async def test_a_hanging_apertium_times_out(tmp_path: Path) -> None:
    command = fake_command(tmp_path, "exec sleep 30")
    provider = translator_from(AssistantSettings(apertium_command=command, timeout_seconds=0.5))
    with pytest.raises(AssistantUnavailable) as unavailable:
        await translate_message(provider, TEXT, "es")
    assert "did not answer within 0.5 s" in unavailable.value.message


async def test_a_failing_apertium_is_unavailable(tmp_path: Path) -> None:
    command = fake_command(tmp_path, 'echo "segmentation fault" >&2\nexit 3')
    provider = translator_from(AssistantSettings(apertium_command=command))
    with pytest.raises(AssistantUnavailable) as unavailable:
        await translate_message(provider, TEXT, "es")
    assert "apertium failed (exit 3): segmentation fault" in unavailable.value.message


async def test_the_command_is_called_with_u_and_the_mode_and_reads_stdin(tmp_path: Path) -> None:
    log = tmp_path / "args"
    command = fake_command(tmp_path, f'echo "$@" >> {log}\ncat')
    draft = await translate_message(
        translator_from(AssistantSettings(apertium_command=command)), TEXT, "es"
    )
    # the fake echoes: every masked token came back, and the opt-out line is the Spanish one
    assert draft.text == TEXT.replace("Reply STOP to opt out", "Responde STOP para cancelar")
    assert log.read_text().split("\n")[0] == "-u eng-spa"


async def test_an_apertium_that_eats_a_masked_token_is_refused(tmp_path: Path) -> None:
    # the first masked region (the placeholder) is ZQXA; this "translation" loses it
    command = fake_command(tmp_path, "sed 's/ZQXA//'")
    provider = translator_from(AssistantSettings(apertium_command=command))
    with pytest.raises(DraftRefused) as refused:
        await translate_message(provider, TEXT, "es", brand_name="Sunrise Coffee")
    assert refused.value.metadata == {
        "token": "{{contact.first_name|there}}",
        "kind": "placeholder",
    }


async def test_apertium_never_sees_the_opt_out_wording_so_cannot_change_its_meaning(
    tmp_path: Path,
) -> None:
    seen = tmp_path / "stdin"
    # a "translation" that turns any opt-out sentence into its opposite
    command = fake_command(
        tmp_path, f"tee -a {seen} | sed 's/to opt out/to keep getting offers/; s/STOP/PARAR/'"
    )
    provider = translator_from(AssistantSettings(apertium_command=command))
    draft = await translate_message(provider, TEXT, "es", brand_name="Sunrise Coffee")
    assert draft.text.endswith("\nResponde STOP para cancelar.")
    assert "offers" not in draft.text and "PARAR" not in draft.text
    assert "STOP" not in seen.read_text() and "opt out" not in seen.read_text()


@pytest.mark.parametrize(
    "script",
    [
        # the masked opt-out wording (the last sentinel) replaced by the opposite meaning
        "sed -E 's/ZQX[A-Z]+[.]$/Responde STOP para seguir recibiendo ofertas./'",
        # the wording dropped, STOP left on its own
        "sed -E 's/ZQX[A-Z]+[.]$/STOP/'",
    ],
    ids=["opposite meaning", "only STOP"],
)
async def test_an_apertium_that_rewrites_the_masked_opt_out_is_refused(
    tmp_path: Path, script: str
) -> None:
    provider = translator_from(AssistantSettings(apertium_command=fake_command(tmp_path, script)))
    with pytest.raises(DraftRefused) as refused:
        await translate_message(provider, TEXT, "es")
    assert refused.value.metadata == {"token": "Reply STOP to opt out", "kind": "opt_out"}


def _running(pid: int) -> bool:
    """pid is a live process (a zombie waiting for its reaper is not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


async def test_a_timeout_kills_the_whole_pipeline(tmp_path: Path) -> None:
    # apertium is a shell script running a pipeline: its programs must die with it
    pid_file = tmp_path / "child"
    command = fake_command(tmp_path, f"sleep 60 &\necho $! > {pid_file}\ncat > /dev/null\nwait")
    provider = translator_from(AssistantSettings(apertium_command=command, timeout_seconds=1))
    started = time.monotonic()
    with pytest.raises(AssistantUnavailable) as unavailable:
        await translate_message(provider, TEXT, "es")
    assert time.monotonic() - started < 2.0
    assert "did not answer within 1 s" in unavailable.value.message
    child = int(pid_file.read_text())

    async def gone() -> bool:  # a child that survived the SIGKILL sleeps its 60 s: still fails
        return not _running(child)

    await eventually(gone, 10, what="the pipeline's sleeping child killed with the timeout")


async def test_the_per_line_fallback_shares_one_deadline(tmp_path: Path) -> None:
    # every run takes 0.4 s and loses the blank lines, so the provider retries line by line:
    # five lines would take 2.4 s, but the whole translation has 1 s
    command = fake_command(tmp_path, "sleep 0.4\ngrep -v '^$'")
    provider = translator_from(AssistantSettings(apertium_command=command, timeout_seconds=1))
    text = "One.\nTwo.\nThree.\nFour.\nFive."
    started = time.monotonic()
    with pytest.raises(AssistantUnavailable) as unavailable:
        await translate_message(provider, text, "es")
    assert time.monotonic() - started < 1.8
    assert "did not answer within 1 s" in unavailable.value.message


async def test_at_most_a_few_apertium_runs_go_at_once(tmp_path: Path) -> None:
    running, log = tmp_path / "running", tmp_path / "log"
    running.mkdir()
    command = fake_command(
        tmp_path,
        f"touch {running}/$$\nls {running} | wc -l >> {log}\nsleep 0.3\nrm {running}/$$\ncat",
    )
    provider = translator_from(AssistantSettings(apertium_command=command))
    drafts = await asyncio.gather(
        *(translate_message(provider, f"Hello number {i}.", "es") for i in range(3 * RUNS_AT_ONCE))
    )
    assert [d.text for d in drafts] == [f"Hello number {i}." for i in range(3 * RUNS_AT_ONCE)]
    counts = [int(line) for line in log.read_text().split()]
    assert len(counts) == 3 * RUNS_AT_ONCE and max(counts) <= RUNS_AT_ONCE


def test_the_container_image_installs_apertium_and_its_language_pair() -> None:
    image = (ROOT / "deploy" / "Containerfile").read_text()
    install = next(line for line in image.splitlines() if "apt-get install" in line)
    assert "apertium" in install.split() and "apertium-eng-spa" in install.split()
