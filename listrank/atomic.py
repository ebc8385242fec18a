"""Write files and folders so that a crash never leaves a half-written output behind.

Also the guards every command applies to its output paths before it starts working
(`check_output_file`, `check_output_folder`): an output that cannot be written, that is an
input, or that is a folder listrank did not write is an error before any compute, never a
traceback after it, and never a deleted folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator

from listrank.errors import ListrankError

# Written into every folder `atomic_dir(..., marker=True)` publishes: "listrank wrote this folder",
# so that a later run may replace it. Folders without it (or an index's meta.json) are never replaced.
MARKER_FILE = ".listrank-output"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove `.NAME.<pid>.*.tmp` / `.NAME.old-<pid>` siblings of `path` left by a killed process.

    Only entries whose process no longer runs are removed, so a concurrent writer's temporary
    survives. Returns what was removed.
    """
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        return []
    pattern = re.compile(r"^\." + re.escape(path.name) + r"\.(?:(\d+)\..*\.tmp|old-(\d+))$")
    # Written by versions before the pid was part of the name: removed once a day old.
    legacy = re.compile(r"^\." + re.escape(path.name) + r"\.[A-Za-z0-9_]{8}\.tmp$")
    removed = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return []
    for entry in entries:
        match = pattern.match(entry.name)
        if match:
            if _pid_alive(int(match.group(1) or match.group(2))):
                continue
        elif legacy.match(entry.name):
            try:
                if time.time() - entry.lstat().st_mtime < 86400:
                    continue
            except OSError:
                continue
        else:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()
        removed.append(entry)
    return removed


def _cannot_write(path: Path, e: OSError) -> ListrankError:
    return ListrankError(f"cannot write {path}: {e.strerror or e}")


def _prepare_parent(path: Path) -> None:
    """The folder a temporary is made in exists, and dead writers' temporaries of `path` are gone."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _cannot_write(path, e) from None
    clean_stale_temporaries(path)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file beside `path`; rename it over `path` only if the block succeeds.

    The file gets the usual permissions (0666 less the umask), like any file `open` creates.
    """
    path = Path(path)
    if path.is_dir():
        raise ListrankError(f"cannot write {path}: it is a folder; give a file name")
    _prepare_parent(path)
    if "b" in mode:
        encoding = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise _cannot_write(path, e) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode, encoding=encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def is_listrank_folder(path: str | os.PathLike) -> bool:
    """True for a folder listrank wrote: it holds the marker, or an index's meta.json."""
    path = Path(path)
    if (path / MARKER_FILE).is_file():
        return True
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("kind") in ("dense", "bm25")


def _is_empty_dir(path: Path) -> bool:
    try:
        return path.is_dir() and not any(path.iterdir())
    except OSError:
        return False


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or child.is_relative_to(parent)


def check_output_folder(path: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (), what: str = "output") -> Path:
    """Refuse, before any work, a folder output that would destroy something.

    Refused: the current folder or one above it; a path that is, or holds, one of `inputs`; an
    existing file; an existing non-empty folder that listrank did not write (no marker / index
    meta.json). An unwritable parent is refused too.
    """
    path = Path(path)
    resolved = path.resolve()
    if _inside(Path.cwd().resolve(), resolved):
        raise ListrankError(f"{what} {path} is the current folder (or holds it); give a new folder name")
    for inp in inputs:
        inp_resolved = Path(inp).resolve()
        if _inside(inp_resolved, resolved):
            raise ListrankError(f"{what} {path} is (or holds) the input {inp}; writing it would delete the input")
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise ListrankError(f"{what} {path} exists and is not a folder; refusing to replace it")
        if not _is_empty_dir(path) and not is_listrank_folder(path):
            raise ListrankError(
                f"{what} {path} exists and was not written by listrank; refusing to replace it "
                "(give a new folder, or remove it yourself)"
            )
    _check_parent_writable(path)
    return path


def check_output_file(path: str | os.PathLike | None, inputs: Iterable[str | os.PathLike] = (), what: str = "output") -> Path | None:
    """Refuse, before any work, a file output that is a folder, an input, or cannot be written."""
    if path is None:
        return None
    path = Path(path)
    if path.is_dir():
        raise ListrankError(f"{what} {path} is a folder; give a file name")
    resolved = path.resolve()
    for inp in inputs:
        if inp is not None and Path(inp).resolve() == resolved:
            raise ListrankError(f"{what} {path} is also an input; writing it would replace the input")
    if path.exists() and not os.access(path, os.W_OK) and not os.access(path.parent, os.W_OK):
        raise ListrankError(f"cannot write {what} {path}: permission denied")
    _check_parent_writable(path)
    return path


def _check_parent_writable(path: Path) -> None:
    parent = path.parent
    while not parent.exists():
        if parent.is_symlink():
            raise ListrankError(f"cannot write {path}: {parent} is a broken link")
        parent = parent.parent
    if not parent.is_dir():
        raise ListrankError(f"cannot write {path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ListrankError(f"cannot write {path}: {parent} is not writable")


@contextlib.contextmanager
def atomic_dir(
    path: str | os.PathLike,
    *,
    replace: Callable[[Path], bool] | None = None,
    marker: bool = False,
) -> Iterator[Path]:
    """Build a folder under a temporary name; swap it in for `path` only if the block succeeds.

    `replace(existing)` decides whether an existing non-empty `path` may be replaced (None: always,
    the old behaviour some callers rely on); when it says no, nothing is touched and a
    `ListrankError` is raised. `marker=True` writes `MARKER_FILE` into the new folder, so that a
    later `replace=is_listrank_folder` accepts it. The folder gets mode 0777 less the umask.
    """
    path = Path(path)
    if replace is not None and path.exists() and not _is_empty_dir(path) and not (path.is_dir() and replace(path)):
        raise ListrankError(f"{path} exists and was not written by listrank; refusing to replace it")
    _prepare_parent(path)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent))
    except OSError as e:
        raise _cannot_write(path, e) from None
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        if marker:
            (tmp / MARKER_FILE).write_text("written by listrank; a later run may replace this folder\n")
        _publish(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _publish(tmp: Path, path: Path) -> None:
    """Move `tmp` to `path`; an existing `path` is moved aside first and deleted after.

    Two processes publishing the same path at once both succeed (the last one wins), and a
    reader never sees a half-written folder: at worst, for a moment, none.
    """
    for _ in range(20):
        if path.exists() or path.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.old.", suffix=".tmp", dir=path.parent))
            try:
                os.replace(path, old / "x")
            except FileNotFoundError:  # another process moved it aside first
                shutil.rmtree(old, ignore_errors=True)
                continue
            try:
                os.replace(tmp, path)
            except OSError:
                shutil.rmtree(old, ignore_errors=True)
                continue
            shutil.rmtree(old, ignore_errors=True)
            return
        try:
            os.replace(tmp, path)  # a rename onto an empty folder succeeds too
            return
        except OSError:
            continue  # another process created `path` in between: move it aside
    raise ListrankError(f"could not publish {path}: other processes kept replacing it")


def write_png(figure, path: str | os.PathLike) -> Path:
    """Save a matplotlib figure as a PNG, atomically (every plot listrank writes goes through here)."""
    with atomic_write(path, "wb") as fh:
        figure.savefig(fh, format="png")
    return Path(path)


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, read 1 MiB at a time (checkpoint manifests, shard-run records)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
