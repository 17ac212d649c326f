"""Files written whole or not at all: the one way Tembo replaces a file others read.

Used by the model registry (entries, the promoted model), the collar keys file and a release's model
files (`lora_bridge.updates.keys`), and a release's staging folder (`lora_bridge.updates.release`).
The new bytes go into a hidden temporary file beside the old one (same folder, so same file system),
which is fsynced, renamed over the old one (`os.replace`), and then the folder is fsynced so the new
name survives a power cut. A crash, a full disk or Ctrl-C before the rename leaves the old file as it
was. The replaced file's mode is kept (a key file its owner made 0600 stays 0600).
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

PARTIAL_MARK = ".partial-"  # a file being written: `.<name>.partial-<pid>-<random>` beside it


def replace_file(path: Path, data: bytes, mode: int | None = None) -> None:
    """Put data at path whole or not at all. The file keeps the mode of the one it replaces; a new file
    gets `mode` (None: what the umask leaves of 0666)."""
    path = Path(path)
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
    temporary = path.with_name(f".{path.name}{PARTIAL_MARK}{os.getpid()}-{secrets.token_hex(4)}")
    try:
        write_new_file(temporary, data, mode)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def write_new_file(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write data into a file that must not exist yet (FileExistsError), fsynced before it returns;
    with mode, exactly that mode, whatever the umask. A failure half way (a full disk, Ctrl-C) takes the
    file this call made away again."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else 0o600)
    try:
        with open(fd, "wb") as f:
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(path).unlink(missing_ok=True)
        raise


def fsync_folder(folder: Path) -> None:
    """Make the names a folder holds durable (a file's own fsync does not cover its name)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
