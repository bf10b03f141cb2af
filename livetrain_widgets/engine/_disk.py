"""One answer to "was this failure a full disk?", for every writer of the project folder."""

from __future__ import annotations

import errno


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
