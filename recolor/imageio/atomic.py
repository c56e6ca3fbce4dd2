"""Atomic files: written to a hidden temporary file beside the target, flushed to disk and renamed
over it, so a crash leaves the old file or the whole new one; and the cleaner of the temporary
files that a killed run left behind."""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from pathlib import Path
from typing import IO, Iterator


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Temporary files are named ".NAME.recolor-PID-RANDOM.tmp": a later run removes those whose
# process is gone (killed with SIGKILL, power cut), and nothing else. Versions before had no PID
# (".NAME.RANDOM.tmp", mkstemp's 8 characters): those are removed once an hour old.
_TEMP_MARK = "recolor-"
_STALE_TEMP = re.compile(r"^\..+\.recolor-(\d+)-[^.]+\.tmp$")
_LEGACY_TEMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")
_LEGACY_TEMP_AGE_S = 3600


@contextlib.contextmanager
def _atomic_file(path: Path) -> Iterator[IO[bytes]]:
    """A binary handle on a temporary file beside ``path``, flushed to disk and renamed over it on success.

    mkstemp creates files as 0600; the file gets the usual 0666-minus-umask mode instead, like
    any file a program writes. The fsync comes before the rename so that a crash right after
    it leaves the old file or the whole new one, never an empty one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.{_TEMP_MARK}{os.getpid()}-", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_current_umask())
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def remove_stale_temp_files(folder: str | Path) -> int:
    """Delete this tool's temporary files in ``folder`` left by processes that no longer run; how many."""
    removed = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            if entry.is_file(follow_symlinks=False) and _is_stale_temp(entry):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed += 1
    return removed


def _is_stale_temp(entry: os.DirEntry) -> bool:
    match = _STALE_TEMP.match(entry.name)
    if match:
        return not _process_alive(int(match.group(1)))
    return bool(_LEGACY_TEMP.match(entry.name)) and time.time() - entry.stat(follow_symlinks=False).st_mtime > _LEGACY_TEMP_AGE_S


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write bytes to path through a temporary file and a rename (same folder, same filesystem)."""
    with _atomic_file(Path(path)) as handle:
        handle.write(data)
