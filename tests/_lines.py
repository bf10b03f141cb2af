"""A child process's stdout, line by line, with a deadline.

``proc.stdout.readline()`` blocks for as long as the child says nothing: a child that hangs would hold the
test until CI's own timeout, with no word of where. A reader thread hands the lines over instead."""

from __future__ import annotations

import queue
import threading
import time
from typing import IO


class Lines:
    def __init__(self, stream: IO[str]) -> None:
        self._q: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in iter(stream.readline, ""):
            self._q.put(line)
        self._q.put(None)

    def next(self, deadline: float, what: str = "the child") -> str:
        """The next line; "" once the child's stdout is closed. TimeoutError when none comes by ``deadline``
        (a ``time.monotonic()`` time)."""
        try:
            line = self._q.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError(f"{what} printed nothing more before the deadline") from None
        if line is None:
            self._q.put(None)  # closed stays closed
            return ""
        return line
