"""Paths a run folder's records hold, kept inside the folder: read back from any working directory, never outside it.

A record names the files a later stage reads (the table, the trained model, the pruned one). They are stored
relative to the run folder, so a folder that is moved, copied or resumed from another directory finds its own
files. Reading one back resolves it inside the folder (symlinks included) and refuses anything that leaves it:
a folder received from someone else must never make hwnas read, copy or overwrite a file elsewhere.

Records written before 2026-12-02 held paths relative to the working directory of the run, or absolute; their
tail that exists inside the folder is taken (``runs/run-x/model`` -> ``model``), so those folders resume too,
and still never read the original's files.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path, PurePath

from hwnas.errors import UserError


def relative_to_folder(folder: Path, path: Path | str) -> str:
    """``path`` (inside ``folder``) as the POSIX path a record stores: relative to ``folder``."""
    relative = os.path.relpath(Path(path).absolute(), Path(folder).absolute())
    if relative == ".." or relative.startswith(".." + os.sep) or os.path.isabs(relative):
        raise ValueError(f"{path} is not inside {folder}")
    return PurePath(relative).as_posix()


def inside_folder(folder: Path, stored: str, where: str) -> Path:
    """The path a record holds (``where`` names the file and field), resolved inside ``folder``; one line if it leaves it.

    A relative path that does not exist is returned as it is (the caller says what is missing), unless an old record's
    tail of it exists in the folder.
    """
    root = Path(folder).resolve()
    given = PurePath(stored)
    refused = UserError(f"{where}: {stored!r} is not inside the run folder {folder}; a run folder only reads its own files")
    if ".." in given.parts:
        raise refused
    if not given.is_absolute():
        candidate = _contained(root, root / given)
        if candidate is None:
            raise refused  # a link inside the folder that leads out of it
        if candidate.exists():
            return candidate
    for tail in _tails(given):
        found = _contained(root, root / tail)
        if found is not None and found.exists():
            return found
    if given.is_absolute():
        raise refused
    return root / given


def _tails(given: PurePath) -> list[PurePath]:
    """The shorter and shorter tails of an old record's path (``/a/b/c`` -> ``a/b/c``, ``b/c``, ``c``)."""
    parts = [part for part in given.parts if part != given.anchor]
    first = 0 if given.is_absolute() else 1
    return [PurePath(*parts[start:]) for start in range(first, len(parts))]


def _contained(root: Path, candidate: Path) -> Path | None:
    resolved = candidate.resolve()
    return resolved if resolved == root or root in resolved.parents else None


def copy_tree_into(source: Path, destination: Path, folder: Path) -> None:
    """Copy ``source`` (a folder inside ``folder``) to ``destination`` (inside ``folder``), never writing through a link.

    ``shutil.copytree`` writes through a symlink it finds at the destination (a ``model/model.pt`` linked to a file
    elsewhere would be overwritten with the model's bytes). Here every link at the destination is removed first, the
    copy keeps links in the source as links (never follows them), and both ends must be inside ``folder``.
    """
    root = Path(folder).resolve()
    for end, name in ((source, "source"), (destination.parent, "destination")):
        if _contained(root, Path(end)) is None:
            raise UserError(f"refusing to copy: the {name} {end} is not inside the run folder {folder}")
    if destination.is_symlink():
        destination.unlink()
    for parent, folders, files in os.walk(destination, followlinks=False):
        for name in [*folders, *files]:
            if (Path(parent) / name).is_symlink():
                (Path(parent) / name).unlink()
    shutil.copytree(source, destination, symlinks=True, dirs_exist_ok=True)


LOCK_FILE = ".lock"


@contextlib.contextmanager
def exclusive(folder: Path, what: str) -> Iterator[None]:
    """Hold ``folder`` for this process (an OS file lock, released when the process ends, even by ``kill -9``).

    Two processes resuming one run folder (or profiling into one store) would do all the work twice and time it
    under each other's load; the second is refused in one line naming the holder's PID.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    if path.is_symlink():
        path.unlink()  # never open a link: the lock file is ours
    handle = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(handle, 32, 0).decode(errors="replace").strip() or "?"
            raise UserError(f"{what} {folder} is in use by process {holder}; wait for it to finish or stop it") from None
        os.ftruncate(handle, 0)
        os.pwrite(handle, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(handle)


def own_file(path: Path, what: str) -> Path:
    """``path`` for a store hwnas writes (a SQLite database), refused in one line when it is a symbolic link.

    SQLite opens the file a link points to: a ``search.db`` linked to a file elsewhere would have the study written
    into that file. A store lives in its folder, as a plain file.
    """
    if Path(path).is_symlink():
        raise UserError(f"{what} {path} is a symbolic link; hwnas writes it only as a plain file in its folder (remove the link)")
    return Path(path)


@contextlib.contextmanager
def held(path: Path) -> Iterator[None]:
    """Wait for, then hold, an OS lock on ``path`` (a lock file): for a short step two processes must not do at once,
    such as creating one search study (SQLite's table creation races otherwise: ``table studies already exists``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    handle = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)
