"""Atomic file writing and checksums.

Outputs appear under their final name only when complete: data is written to a temporary
file in the same directory, flushed and fsynced, then renamed (atomic on POSIX). A failure
(disk full, Ctrl-C) removes the temporary file, so no half-written output is ever left.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from colliderlab.core.errors import OutputError


def _umask() -> int:
    """The process's file-creation mask (read once: setting it is process-wide)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: Outputs get the permissions of a plainly created file (0o666 less the umask): the
#: temporary file of :func:`atomic_path` is created 0o600, which would keep the outputs from
#: the other users of a shared cluster filesystem.
_FILE_MODE = 0o666 & ~_umask()


def sha256_file(path: str | os.PathLike[str], block: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while data := f.read(block):
            h.update(data)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds
    (with the permissions of a file created plainly: 0o666 less the umask)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, _FILE_MODE)
        os.replace(tmp_path, path)
    except OSError as err:
        tmp_path.unlink(missing_ok=True)
        if err.errno == errno.ENOSPC:
            raise OutputError(
                f"no space left on the device while writing {path}; nothing half-written was "
                "kept. Free some space (or choose another output directory) and rerun the same "
                "command: completed parts are kept and the run resumes."
            ) from err
        raise
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike[str], writer: Callable[[Path], Any]) -> None:
    """Call ``writer(tmp_path)`` and move the result onto ``path`` atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON, atomically."""
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    write_atomic(path, lambda p: p.write_text(text))
