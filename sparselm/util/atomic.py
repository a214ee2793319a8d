"""Atomic file replacement: a reader sees either the old file or the complete new one, never a part."""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import BinaryIO, Callable, Union

Content = Union[bytes, str, Callable[[BinaryIO], None]]


def atomic_write(path: Union[str, os.PathLike], content: Content) -> Path:
    """Write ``content`` to ``path`` atomically and return ``path`` as a Path.

    ``content`` is bytes, str (written as UTF-8) or a function that writes to the binary file object
    it is given. The data goes to a temporary file ``.<name>.<random>.tmp`` in the same directory,
    which is flushed, fsynced and then renamed over ``path`` (``os.replace``), so an existing file is
    only ever replaced by a complete new one. On any exception the temporary file is removed, the old
    file is left untouched and the exception propagates. The new file gets the permissions of a newly
    created file (0o666 minus the umask).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content.encode("utf-8") if isinstance(content, str) else content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return path


def _fsync_directory(directory: Path) -> None:
    """Persist a rename by fsyncing its directory (best effort: not every platform allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_directory(path: Union[str, os.PathLike], fill: Callable[[Path], None], *, replace: bool = False) -> Path:
    """Create the folder ``path`` atomically: ``fill(tmp)`` writes the files into a sibling temporary
    folder ``.<name>.<random>.tmp``, whose files are then fsynced and which is renamed to ``path``.

    A reader never sees a half-written folder: ``path`` is either absent, the old folder or the
    complete new one. An existing empty folder is replaced; an existing non-empty one only with
    ``replace=True`` (FileExistsError otherwise), in which case it is first renamed aside and deleted
    once the new folder is in place. On any exception the temporary folder is removed, the old folder
    is left as it was and the exception propagates.
    """
    import shutil

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path} exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not replace:
        raise FileExistsError(f"{path} exists and is not empty")
    token = secrets.token_hex(6)
    tmp = path.with_name(f".{path.name}.{token}.tmp")
    tmp.mkdir()
    try:
        fill(tmp)
        for child in tmp.iterdir():
            fd = os.open(child, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_directory(tmp)
        old = None
        if path.is_dir():
            old = path.with_name(f".{path.name}.{token}.old")
            os.rename(path, old)
        try:
            os.rename(tmp, path)
        except BaseException:
            if old is not None:
                os.rename(old, path)
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    _fsync_directory(path.parent)
    return path
