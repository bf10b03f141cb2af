"""One process at a time per project folder.

Two notebooks training the same project would each believe their sampler and checkpoints are the truth
and overwrite each other's. The lock is an OS file lock (``flock``), so it is released by the kernel
when the holder dies, even by SIGKILL: a crashed notebook never leaves the project locked.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


class ProjectLockedError(RuntimeError):
    """The project is open in another process."""


class ProjectReadOnlyError(PermissionError):
    """The project's folder cannot be written (a read-only disk or mount, or no write permission)."""

    def __str__(self) -> str:  # the sentence alone, not "[Errno 30] ..."
        return str(self.strerror)


#: what a folder that cannot be written answers: a read-only filesystem, or no permission
_UNWRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


def unwritable(exc: OSError) -> bool:
    """``exc`` says the folder cannot be written (read-only disk or no permission)."""
    return exc.errno in _UNWRITABLE


def read_only_error(folder: Path, exc: OSError) -> ProjectReadOnlyError:
    """The sentence for a project folder that cannot be written."""
    why = "is on a read-only disk" if exc.errno == errno.EROFS else "cannot be written by this user"
    return ProjectReadOnlyError(
        exc.errno,
        f"{folder} {why}, and a project is opened to save labels and checkpoints into it: copy the folder "
        "somewhere writable and open the copy there (its labels are in labels.sqlite)",
    )


class ProjectLock:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if unwritable(exc):
                raise read_only_error(self.path.parent, exc) from exc
            raise
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
