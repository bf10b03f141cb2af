"""One process at a time per project folder.

Two notebooks training the same project would each believe their sampler and checkpoints are the truth
and overwrite each other's. The lock is an OS file lock (``flock``), so it is released by the kernel
when the holder dies, even by SIGKILL: a crashed notebook never leaves the project locked.
"""

from __future__ import annotations

import os
from pathlib import Path


class ProjectLockedError(RuntimeError):
    """The project is open in another process."""


class ProjectLock:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock(fd)
        except OSError:
            try:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            finally:
                os.close(fd)
            raise ProjectLockedError(
                f"{self.path.parent} is open in another process ({holder}); close that session first "
                "(await session.close()) or restart its kernel"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            _unlock(self._fd)
            os.close(self._fd)
            self._fd = None


try:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

except ImportError:  # Windows
    import msvcrt

    def _lock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
