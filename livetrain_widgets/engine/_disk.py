"""One answer to "was this failure a full disk?", for every writer of the project folder."""

from __future__ import annotations

import errno
import os


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (an OSError, SQLite's or PostgreSQL's error, or safetensors' / torch's own error
    types, which keep the errno only in their text) means the disk or the quota is full."""
    if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return True
    if getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL":
        return True
    if getattr(exc, "sqlstate", None) == "53100":  # PostgreSQL's disk_full, raised on the server
        return True
    text = str(exc)
    return any(s in text for s in ("No space left", "os error 28", "Disk quota exceeded", "disk is full"))


class DiskFullError(OSError):
    """A write into the project failed because the disk (or the quota) is full. The message names the
    place and says that nothing labeled was lost; whatever the write had started is cleaned up."""

    def __init__(self, what: str, where: str | os.PathLike[str]) -> None:
        super().__init__(errno.ENOSPC, f"{what}: the disk is full at {where}; nothing labeled was lost")
        self.where = str(where)

    def __str__(self) -> str:  # the sentence alone, not "[Errno 28] ..."
        return str(self.strerror)
