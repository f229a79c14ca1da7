"""Backup and restore of the SQLite database, safe while the bot runs.

The copy is made with SQLite's online backup API in one step: it reads one consistent snapshot (in WAL
mode the bot keeps writing meanwhile), is checked with `PRAGMA integrity_check`, and only then takes the
destination's name, so a half-written file never looks like a backup. A restore writes through SQLite
as well, so a stale -wal file next to the database cannot be replayed over the restored pages.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

from bot.config import Settings
from storage.sqlite import migrations


class BackupError(Exception):
    """The backup or restore could not be made; the message says why."""


@dataclass(frozen=True)
class BackupInfo:
    path: Path
    size: int
    schema_version: int
    instructions: int

    def describe(self) -> str:
        return (f"{self.path}: {self.size} bytes, schema version {self.schema_version}, "
                f"{self.instructions} instructions")


def backup(database: Path, dest: Path) -> BackupInfo:
    """Copy the live database to dest (which must not exist yet)."""
    if not database.exists():
        raise BackupError(f"no database at {database}")
    if dest.exists():
        raise BackupError(f"{dest} exists; choose a new name (a backup never overwrites a file)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        with contextlib.closing(sqlite3.connect(database)) as source, \
                contextlib.closing(sqlite3.connect(partial)) as copy:
            source.execute("PRAGMA busy_timeout=5000")
            source.backup(copy)  # one step: a single read transaction, one snapshot
            copy.execute("PRAGMA journal_mode=DELETE")  # a self-contained file, no -wal beside it
            _check(copy, partial)
        _fsync(partial)
        partial.replace(dest)
        _fsync_dir(dest.parent)
    except sqlite3.Error as err:
        partial.unlink(missing_ok=True)
        raise BackupError(f"backup of {database} failed: {err}") from err
    return inspect(dest)


def restore(settings: Settings, source: Path) -> BackupInfo:
    """Replace the configured database with a backup; refused while the bot answers on its port."""
    inspect(source)  # refuse a file that is no sound Quanzu database before touching the live one
    if _listening(settings.server.host, settings.server.port):
        raise BackupError(f"something answers on {settings.server.host}:{settings.server.port}; "
                          "stop the bot before restoring")
    target = settings.database.path
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with contextlib.closing(sqlite3.connect(source)) as backup_db, \
                contextlib.closing(sqlite3.connect(target)) as live:
            backup_db.backup(live)
            live.execute("PRAGMA journal_mode=WAL")
            _check(live, target)
    except sqlite3.Error as err:
        raise BackupError(f"restore into {target} failed: {err}") from err
    return inspect(target)


def inspect(path: Path) -> BackupInfo:
    """Check a database file and describe it."""
    if not path.exists():
        raise BackupError(f"no such file: {path}")
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            _check(db, path)
            (version,) = db.execute("PRAGMA user_version").fetchone()
            (count,) = db.execute("SELECT COUNT(*) FROM instructions").fetchone()
    except sqlite3.Error as err:
        raise BackupError(f"{path} is not a Quanzu database: {err}") from err
    known = max((number for number, _ in migrations()), default=0)
    if version > known:
        raise BackupError(f"{path} has schema version {version}; this Quanzu knows up to {known}")
    return BackupInfo(path, path.stat().st_size, version, count)


def _check(db: sqlite3.Connection, path: Path) -> None:
    result = db.execute("PRAGMA integrity_check").fetchone()[0]
    if result != "ok":
        raise BackupError(f"{path} failed the integrity check: {result}")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be fsynced
        _fsync(path)


def _listening(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host or "127.0.0.1", port), timeout=0.5):
        return True
    return False


def run_backup_command(settings: Settings, path: str, restore_it: bool) -> int:
    """`bot.py backup`: print what was written, or the reason it was not; the exit status."""
    try:
        info = restore(settings, Path(path)) if restore_it else backup(settings.database.path, Path(path))
    except BackupError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(("restored " if restore_it else "backed up ") + info.describe())
    return 0
