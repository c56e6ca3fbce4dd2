"""Atomic files: written to a hidden temporary file beside the target, flushed to disk and renamed
over it, so a crash leaves the old file or the whole new one; and the cleaner of the temporary
files that a killed run left behind."""
from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from pathlib import Path
from typing import IO, Iterator


def _read_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (/proc/self/status);
    elsewhere by setting and restoring it, which only this module's import does."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Read once, at import: os.umask can only be read by setting it, for the whole process, so
# reading it per file from the writing threads raced (a thread could restore another's 022 and
# leave the process, and the files it wrote meanwhile, world-readable).
_UMASK = _read_umask()

# Temporary files are named ".NAME.recolor-PID-RANDOM.tmp" (RANDOM: mkstemp's 8 characters): a
# later run removes those whose process is gone (killed with SIGKILL, power cut), and nothing
# else: a hidden ".NAME.XXXXXXXX.tmp" without the mark is someone else's file.
_TEMP_MARK = "recolor-"
_STALE_TEMP = re.compile(r"^\..+\.recolor-(\d+)-[a-z0-9_]{8}\.tmp$")


@contextlib.contextmanager
def _atomic_file(path: Path) -> Iterator[IO[bytes]]:
    """A binary handle on a temporary file beside ``path``, flushed to disk and renamed over it on success.

    mkstemp creates files as 0600; the file gets the usual 0666-minus-umask mode instead, like
    any file a program writes. The fsync comes before the rename so that a crash right after
    it leaves the old file or the whole new one, never an empty one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(path.name), suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


_NAME_MAX = 255  # bytes in one file name (ext4, xfs, btrfs, tmpfs)


def _temp_prefix(name: str) -> str:
    """".NAME.recolor-PID-" with NAME cut short enough (in bytes) that the whole
    temporary name, mkstemp's 8 characters and ".tmp" added, fits in one file name: a 250-byte
    photo name must still be writable."""
    tail = f".{_TEMP_MARK}{os.getpid()}-"
    room = _NAME_MAX - len(".") - len(tail.encode()) - 8 - len(".tmp")
    encoded = name.encode("utf-8", "surrogateescape")
    if len(encoded) > room:
        name = encoded[:room].decode("utf-8", "surrogateescape")  # the same bytes, cut
    return f".{name}{tail}"


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
    return bool(match) and not _process_alive(int(match.group(1)))


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write bytes to path through a temporary file and a rename (same folder, same filesystem).

    The temporary file's size is checked before the rename: whatever the filesystem did with the
    writes (a full disk, a quota), the target is the whole of ``data`` or is left as it was.
    """
    with _atomic_file(Path(path)) as handle:
        handle.write(data)
        handle.flush()
        written = os.fstat(handle.fileno()).st_size
        if written != len(data):
            raise OSError(errno.ENOSPC, f"only {written:,} of {len(data):,} bytes reached the file", str(path))
