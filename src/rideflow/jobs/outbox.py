"""The development mail transport: every message a file `<message id>.eml` under
`<data_dir>/outbox/` (mode 0600: reset links are secrets), written whole then renamed into
place, so a reader never sees half a message and a job run twice writes the same file again.
Production replaces it with a real sender (`rideflow.jobs.tasks.MAILER.sender = ...`)."""

from __future__ import annotations

import asyncio
import email.utils
import os
import tempfile
from email.message import EmailMessage
from pathlib import Path

FROM = "RideFlow <no-reply@rideflow.invalid>"


class Outbox:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def send(self, to: str, subject: str, body: str, message_id: str) -> None:
        message = EmailMessage()
        message["From"] = FROM
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = email.utils.formatdate(usegmt=True)
        message["Message-ID"] = f"<{message_id}@rideflow.invalid>"
        message.set_content(body, cte="8bit")  # readable with `cat`, long lines whole
        await asyncio.to_thread(self._write, f"{message_id}.eml", bytes(message))

    def _write(self, name: str, data: bytes) -> None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, self.folder / name)
        except BaseException:
            os.unlink(tmp)
            raise
