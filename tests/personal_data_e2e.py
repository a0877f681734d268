"""Personal data in a real `reengage up` (issue 13 item 7): the flow of tests/test_up_e2e.py
creates a contact twice, has texts arrive through the signed Twilio webhook, and at the end
every log of the run (the process output, PostgreSQL's and Temporal's logs under the data
dir) is searched for the phone numbers, the name and the message texts used: none may appear.

With REENGAGE_LOG_FORMAT=json (issue 19) the process's log is also read line by line: each is a
JSON object with the required fields, and the lines written while a request was answered carry
that request's id, the one its answer named in `x-request-id`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
from twilio.request_validator import RequestValidator

from reengage.v1 import contacts_pb2, contacts_pb2_grpc

# Set for the stack by ports_env (tests/test_up_e2e.py): the webhooks are off without it.
TWILIO_AUTH_TOKEN = "e2e-twilio-auth-token"
PUBLIC_URL = "http://localhost:8080"  # the default REENGAGE_PUBLIC_URL: Twilio signs it
DOWNTOWN = "franchisors/demo/locations/downtown"
DOWNTOWN_NUMBER = "+12125550100"  # the demo's sender number (a business's, not personal)
CONTACT_PHONE = "+12125550187"
STRANGER_PHONE = "+13125550163"
FIRST_NAME = "Quillonia"
TEXTS = (
    "Are you open on Sunday? Table for four, code 7731",
    "Is the maple pumpkin latte back yet? asking for Marisol",
)


def _phone_forms(e164: str) -> tuple[str, ...]:
    national = e164[2:]
    exchange, line = national[3:6], national[6:]
    return (national, f"{exchange}{line}", f"{exchange}-{line}", f"{exchange} {line}")


@dataclass
class Exercised:
    """What exercise_personal_data did: what no log may contain, and the request ids the
    answers named (x-request-id)."""

    secrets: tuple[str, ...] = ()
    grpc_request_ids: list[str] = field(default_factory=list)
    # of each text's second (repeated) delivery, whose handling logs "a repeated webhook"
    repeated_webhook_request_ids: list[str] = field(default_factory=list)


def _trailing_request_id(call: Any) -> str:
    values = [v for k, v in call.trailing_metadata() or () if k == "x-request-id"]
    assert len(values) == 1, call.trailing_metadata()
    return str(values[0])


def exercise_personal_data(grpc_target: str, http: str, key: str) -> Exercised:
    """Creates a contact, creates it again (ALREADY_EXISTS), delivers two texts from it and a
    STOP from a stranger (a suppressed contact is created), each twice."""
    done = Exercised()
    metadata = (("authorization", f"Bearer {key}"),)
    request = contacts_pb2.CreateContactRequest(
        parent=DOWNTOWN,
        contact=contacts_pb2.Contact(phone_number=CONTACT_PHONE, first_name=FIRST_NAME),
    )
    with grpc.insecure_channel(grpc_target) as channel:
        stub = contacts_pb2_grpc.ContactServiceStub(channel)
        _, call = stub.CreateContact.with_call(request, metadata=metadata, timeout=10)
        done.grpc_request_ids.append(_trailing_request_id(call))
        try:
            stub.CreateContact(request, metadata=metadata, timeout=10)
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.ALREADY_EXISTS
            done.grpc_request_ids.append(_trailing_request_id(error))
        else:
            raise AssertionError("a duplicate CreateContact was accepted")

        texts = [(CONTACT_PHONE, TEXTS[0]), (CONTACT_PHONE, TEXTS[1]), (STRANGER_PHONE, "STOP")]
        for index, (sender, body) in enumerate(texts):
            form = {
                "MessageSid": f"SM{index:032d}",
                "AccountSid": "AC00000000000000000000000000000000",
                "From": sender,
                "To": DOWNTOWN_NUMBER,
                "Body": body,
            }
            signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(
                f"{PUBLIC_URL}/sms/twilio/inbound", form
            )
            for _ in range(2):  # Twilio repeats webhooks: the second one changes nothing
                reply = httpx.post(
                    f"{http}/sms/twilio/inbound",
                    data=form,
                    headers={"X-Twilio-Signature": str(signature)},
                    timeout=15,
                )
                assert reply.status_code == 200, reply.text
            done.repeated_webhook_request_ids.append(reply.headers["x-request-id"])

        listed = stub.ListContacts(
            contacts_pb2.ListContactsRequest(parent=DOWNTOWN, page_size=100),
            metadata=metadata,
            timeout=10,
        )
    by_phone = {c.phone_number: c for c in listed.contacts}
    assert by_phone[CONTACT_PHONE].first_name == FIRST_NAME
    assert STRANGER_PHONE in by_phone  # the STOP was received: a suppressed contact
    done.secrets = (
        *_phone_forms(CONTACT_PHONE),
        *_phone_forms(STRANGER_PHONE),
        FIRST_NAME,
        *TEXTS,
        "7731",
        "Marisol",
    )
    return done


def assert_no_personal_data_in_logs(
    process_log: Path, data_dir: Path, secrets: tuple[str, ...]
) -> None:
    """No log of the run holds any of `secrets`: the process output and every *.log under the
    data dir (PostgreSQL's server.log, Temporal's temporal.log)."""
    logs = [process_log, *sorted(data_dir.rglob("*.log"))]
    assert {p.name for p in logs} >= {"server.log", "temporal.log"}, logs
    found = []
    for path in logs:
        text = path.read_text("utf-8", "replace")
        found += [f"{secret!r} in {path}" for secret in secrets if secret in text]
    assert found == [], found


JSON_FIELDS = ("ts", "level", "logger", "message")


def assert_json_log(process_log: Path, exercised: Exercised, demo_key: str) -> list[dict[str, Any]]:
    """Every line `reengage up` wrote is a JSON object with JSON_FIELDS, but the demo key
    block and the dashboard hint it prints (not logs) for the developer; each repeated
    webhook's line ("a repeated webhook, no effect") carries the request id its answer named.
    Returns the entries."""
    entries, printed = [], []
    for line in process_log.read_text("utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            printed.append(line)
            continue
        assert isinstance(entry, dict) and all(entry.get(k) for k in JSON_FIELDS), line
        entries.append(entry)
    assert [line.strip() for line in printed if line.strip()][1:] == [
        demo_key,
        "the web dashboard: a one-time sign-in link for the demo's brand admin with",
        "reengage dashboard link --staff franchisors/demo/staffMembers/owner",
    ], printed
    assert printed[1].startswith("demo franchisor-admin API key"), printed
    repeated = [e for e in entries if e["message"].endswith(": a repeated webhook, no effect")]
    assert [e.get("request_id") for e in repeated] == exercised.repeated_webhook_request_ids
    assert len(set(exercised.grpc_request_ids)) == 2
    return entries
