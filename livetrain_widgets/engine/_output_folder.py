"""The one way a command writes into a folder the user names (``livetrain bench --out X`` and the like).

A command may create, replace and delete only what it wrote itself. ``--out`` has pointed at a real
labeling project before, and ``bench`` deleted it. So the folder must be new, empty, or one a livetrain
command made earlier: it carries a marker file (:data:`MARKER`) listing every path written into it.
A path not on that list is never replaced, and a folder is only ever deleted while it still holds the
marker its command put there (and no session holds it open). Anything else is refused with an
:class:`OutputFolderError` naming the path.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from .project_lock import ProjectLock, ProjectLockedError

#: the marker a livetrain command leaves in a folder it made: JSON, ``{"command", "written": [...]}``
MARKER = ".livetrain-output.json"


class OutputFolderError(FileExistsError):
    """A command was pointed at something it did not make; the message names the path."""


class OutputFolder:
    """An output folder for ``command`` (e.g. ``"livetrain bench"``), claimed when constructed.

    :meth:`file` gives the path of a file to write (refused if something the command did not write is
    there already); :meth:`scratch` gives a fresh, empty folder (the same command's earlier one is
    removed first). Nothing else in the folder is touched.
    """

    def __init__(self, path: str | os.PathLike[str], command: str) -> None:
        self.path = Path(path)
        self.command = command
        if self.path.exists() and not self.path.is_dir():
            raise OutputFolderError(f"{self.path} is a file, not a folder: give {command} a new or empty folder")
        marker = self.path / MARKER
        if marker.is_file() and not marker.is_symlink():
            self._written = _read_marker(marker)
        elif self.path.is_dir() and (present := sorted(p.name for p in self.path.iterdir())):
            shown = ", ".join(present[:3]) + (f" and {len(present) - 3} more" if len(present) > 3 else "")
            raise OutputFolderError(
                f"{self.path} already holds files that livetrain did not write ({shown}); {command} writes only "
                "into a new or empty folder, or one it made before: choose another folder"
            )
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            self._written = []
            self._save()

    def file(self, name: str) -> Path:
        """The path to write ``name`` (relative, ``/``-separated) at; its parent folders are made.

        Refused when something is there that this folder's commands did not write (the user's own file)."""
        return self.files([name])[0]

    def files(self, names: Iterable[str]) -> list[Path]:
        """:meth:`file` for many names at once (an export's), all checked before any is listed or written:
        one name that is not ours to replace refuses the whole batch, and the marker is saved once."""
        rels = [_relative(n) for n in names]
        written = set(self._written)
        for rel in rels:
            path = self.path / rel
            if rel not in written and (path.exists() or path.is_symlink()):
                raise OutputFolderError(
                    f"{path} is not {self.command}'s to replace (livetrain did not write it): nothing was written; "
                    "move it away, or choose another output folder"
                )
            if rel in written and path.is_symlink():  # ours once, now a link: writing would follow it
                raise OutputFolderError(f"{path} has been replaced by a link since livetrain wrote it; remove it")
        new = [rel for rel in dict.fromkeys(rels) if rel not in written]
        if new:
            self._written.extend(new)
            self._save()  # listed before they are written: a crash between the two leaves nothing unlisted
        paths = [self.path / rel for rel in rels]
        for parent in {p.parent for p in paths}:
            parent.mkdir(parents=True, exist_ok=True)
        return paths

    def written(self) -> list[str]:
        """The names (relative, ``/``-separated) livetrain commands wrote here."""
        return list(self._written)

    def remove(self, name: str) -> bool:
        """Delete ``name`` if a livetrain command wrote it here (and it is not a link put there since);
        anything else stays. Returns whether a file was deleted."""
        rel = _relative(name)
        path = self.path / rel
        if rel not in self._written or path.is_symlink() or not path.is_file():
            return False
        path.unlink()
        self._written.remove(rel)
        self._save()
        return True

    def write(self, name: str, data: bytes | str) -> Path:
        """Write ``name`` whole (a new file renamed into place: a crash leaves the old one or the new one)."""
        path = self.file(name)
        atomic_write(path, data.encode("utf-8") if isinstance(data, str) else data)
        return path

    def scratch(self, name: str) -> Path:
        """A new, empty folder ``name`` inside, for work that is thrown away (bench's projects).

        An earlier one is deleted first, but only while it still carries the marker written into it here
        and no session holds a project inside it open."""
        path = self.file(name)
        if path.exists():
            inner = path / MARKER
            if path.is_symlink() or not path.is_dir() or not inner.is_file() or _read_kind(inner) != "scratch":
                raise OutputFolderError(
                    f"{path} is not the scratch folder {self.command} made (its marker {MARKER} is gone): "
                    "not deleted; move it away, or choose another output folder"
                )
            _remove_unless_open(path)
        path.mkdir()
        _write_json(path / MARKER, {"command": self.command, "kind": "scratch"})
        return path

    def _save(self) -> None:
        _write_json(self.path / MARKER, {"command": self.command, "kind": "output", "written": self._written})


def _relative(name: str) -> str:
    rel = PurePosixPath(name)
    if rel.is_absolute() or not rel.parts or ".." in rel.parts or rel.name == MARKER:
        raise ValueError(f"an output name must be a relative path inside the folder, got {name!r}")
    return rel.as_posix()


def _read_marker(marker: Path) -> list[str]:
    try:
        doc = json.loads(marker.read_text(encoding="utf-8"))
        written = doc["written"]
        if not (isinstance(written, list) and all(isinstance(w, str) for w in written)):
            raise TypeError("written is not a list of names")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OutputFolderError(f"{marker} cannot be read ({exc}); choose another output folder") from None
    return [_relative(w) for w in written]


def _read_kind(marker: Path) -> str | None:
    try:
        kind = json.loads(marker.read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        return None
    return kind if isinstance(kind, str) else None


def _write_json(path: Path, doc: dict[str, object]) -> None:
    atomic_write(path, json.dumps(doc, indent=1).encode("utf-8"))


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``path`` so that a reader (or a process killed meanwhile) never sees half of it: a temporary
    file beside it, fsync, rename."""
    # mkstemp: the temporary file gets a name nobody has, so not even it can replace a user's file
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide the results from the user's group
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _remove_unless_open(folder: Path) -> None:
    """Delete ``folder``, holding every project lock inside it meanwhile (refused if one is held)."""
    held: list[ProjectLock] = []
    try:
        for lock_file in sorted(folder.rglob(".lock")):
            lock = ProjectLock(lock_file)
            try:
                lock.acquire()
            except ProjectLockedError as exc:
                raise OutputFolderError(f"{folder} was not deleted: {exc}") from None
            held.append(lock)
        shutil.rmtree(folder)
    finally:
        for lock in held:
            lock.release()


__all__ = ["MARKER", "OutputFolder", "OutputFolderError", "atomic_write"]
