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
