"""A process that enrolls one contact with the real `workflows.enrolling.enroll` and is killed
(SIGKILL, no clean-up) inside it: `before` the workflow's start, or `after` the start returned
and before the run id is recorded. Before it dies it writes the StartRequest enroll built
(its repr) to a file, so the test can compare it with the reconciler's.

    python -m tests.orphan_enroll DATABASE_URL TEMPORAL_ADDRESS TASK_QUEUE CONTACT SEQUENCE
        before|after REQUEST_FILE
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import psycopg
from temporalio.client import Client

from tenants.core.names import parse_child
from tests.support import OPERATOR
from workflows.client import EnrollmentClient, StartRequest
from workflows.enrolling import enroll


class KilledInStart(EnrollmentClient):
    """The real client, but the process dies around the start."""

    def __init__(self, client: Client, task_queue: str, when: str, request_file: Path) -> None:
        super().__init__(client, task_queue)
        self._when = when
        self._request_file = request_file

    async def start(self, request: StartRequest) -> str:
        self._request_file.write_text(repr(request))
        if self._when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        run_id = await super().start(request)
        os.kill(os.getpid(), signal.SIGKILL)
        return run_id


async def main(argv: list[str]) -> None:
    database_url, temporal_address, task_queue, contact, sequence, when, request_file = argv
    client = await Client.connect(temporal_address)
    workflows = KilledInStart(client, task_queue, when, Path(request_file))
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await enroll(
            conn,
            workflows,
            OPERATOR,
            parse_child(contact, "contacts"),
            parse_child(sequence, "sequences"),
        )
    raise SystemExit("enroll returned: the process was not killed")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
