"""Run artifacts: atomic file and directory writes, strict JSON, run directories.

Every file a command writes goes through here, so that an interrupted run never leaves a half-written file
under its final name:

    write_bytes / write_text    a hidden temporary sibling, optionally fsync'ed, then `os.replace`
    atomic_path                 the same for writers that need a path (savefig, imageio, torch.save, np.savez);
                                the temporary name keeps the real suffix, so format detection still works
    atomic_dir                  a directory built in a hidden temporary sibling and renamed into place; an
                                existing directory is replaced only once the new one is complete
    write_json                  strict JSON (`to_jsonable`: NaN / inf -> null, numpy / torch / Path / enum /
                                dataclass -> plain), written atomically; any strict parser reads it
    make_run_dir                an output directory, created if needed; a path that is a file is refused
    check_out_file / _dir       an output path checked before the work: not a folder where a file goes (or a file
                                where a folder goes), and a parent that can be created and written

Final files and directories get the permissions a plain open() / mkdir() gives under the umask (0644 / 0755 under
umask 022): temporaries are made with open() and mkdir(), never mkstemp / mkdtemp (0600 / 0700).

Temporary names are `.<name>.tmp-<pid>-<random><suffix>`: unique per process and call, and recognisable, so a
later write of the same directory can delete what a killed run left (`clean_stale`).
"""

from __future__ import annotations

import dataclasses
import glob
import json
import math
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from enum import Enum
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import torch

TMP_TAG = ".tmp-"  # in every temporary name: .<name>.tmp-<pid>-<hex>[<suffix>]
OLD_TAG = ".old-"  # a replaced directory, moved aside until the new one is in place


def _unique() -> str:
    return f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def temp_sibling(path: Path) -> Path:
    """A hidden, unique temporary path next to `path` that keeps its suffix (`.eval.png.tmp-123-ab12cd34.png`)."""
    return path.with_name(f".{path.name}{TMP_TAG}{_unique()}{path.suffix}")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | Path, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of `path` to write to; on success it is renamed onto `path` (creates parents).

    On any exception (KeyboardInterrupt included) the temporary file is removed and an existing `path` is left
    as it was. Temporaries of `path` left by killed runs are deleted first (`clean_stale`); IsADirectoryError
    (one line) when `path` is a folder.

    Args:
        path: the final file.
        fsync: flush the file (and the folder entry) to disk before and after the rename: survives a power cut.
    Yields:
        The temporary path, with `path`'s suffix (matplotlib, imageio and np.savez pick the format from it).
    """
    path = Path(path)
    if path.is_dir():  # else os.replace fails naming the temporary file, not the path the user gave
        raise IsADirectoryError(f"{path} is a folder, not a file; remove it or choose another path")
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path)
    tmp = temp_sibling(path)
    try:
        yield tmp
        if fsync:
            _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    if fsync:
        _fsync(path.parent)


def write_bytes(path: str | Path, data: bytes, fsync: bool = False) -> Path:
    """Write `data` to `path` atomically (see `atomic_path`); creates parents. Returns `path`."""
    path = Path(path)
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)
    return path


def write_text(path: str | Path, text: str, fsync: bool = False) -> Path:
    """Write `text` (UTF-8) to `path` atomically (see `atomic_path`); creates parents. Returns `path`."""
    return write_bytes(path, text.encode("utf-8"), fsync=fsync)


# --------------------------------------------------------------------------------------------------- directories


def _owner_alive(name: str) -> bool:
    """Whether the process that made the temporary `name` (`...tmp-<pid>-<hex>`) still runs."""
    pid_text = name.rsplit(TMP_TAG if TMP_TAG in name else OLD_TAG, 1)[-1].split("-", 1)[0]
    if not pid_text.isdigit():
        return False  # not one of ours (an older naming): nothing runs that could still use it
    pid = int(pid_text)
    if pid == os.getpid():
        return True  # this process: maybe another thread's write in progress
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    return True


def clean_stale(path: str | Path) -> list[Path]:
    """Delete the temporary siblings of `path` left by killed runs (their process is gone); returns them.

    Temporaries of a running process are kept. A moved-aside old copy is deleted only while `path` itself exists
    (otherwise it is the only copy left by a run killed in the middle of the final renames).
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    removed = []
    for tag in (TMP_TAG, OLD_TAG):
        for stale in path.parent.glob(f".{glob.escape(path.name)}{tag}*"):
            if tag == OLD_TAG and not path.exists():
                continue
            if not _owner_alive(stale.name):
                _remove(stale)
                removed.append(stale)
    return removed


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a hidden temporary directory to build `path` in; on success it is renamed into place.

    An existing directory at `path` is moved aside, replaced and then deleted, only once the new one is
    complete; on any exception the temporary directory is removed and `path` is left as it was. Temporary
    directories of the same target left by killed runs are deleted first (`clean_stale`).

    Args:
        path: the final directory (its parent is created if needed).
    Yields:
        The temporary directory, next to `path` (same file system: the renames are atomic).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path} is a file, not a directory; remove it or choose another path")
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path)
    tmp = path.parent / f".{path.name}{TMP_TAG}{_unique()}"
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if path.exists():
            old = path.parent / f".{path.name}{OLD_TAG}{_unique()}"
            path.rename(old)
        try:
            tmp.rename(path)
        except BaseException:
            if old is not None:
                old.rename(path)  # put the previous directory back
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _check_creatable(path: Path, option: str) -> None:
    """OSError (one line, naming `option`) unless `path` could be created: its nearest existing ancestor must be a
    directory this process can write to."""
    ancestor = path.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise NotADirectoryError(f"{option} {path}: {ancestor} is a file, not a directory; choose another {option}")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise PermissionError(
            f"{option} {path}: {ancestor} is not writable; choose a folder you can write, or fix its permissions"
        )


def check_out_dir(path: str | Path, option: str = "--out") -> Path:
    """`path` as a Path, checked before any work is done; nothing is created.

    Raises (one line, naming `option`): NotADirectoryError if it exists and is not a directory, or if a parent
    is a file; PermissionError if it does not exist and its nearest existing parent is not writable.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{option} {path} is a file, not a directory; choose another {option}")
    if not path.exists():
        _check_creatable(path, option)
    return path


def check_out_file(path: str | Path, option: str = "--out") -> Path:
    """`path` as a Path for a file a command writes at its end, checked before any work is done; nothing is created.

    Raises (one line, naming `option`): IsADirectoryError if it is an existing directory; NotADirectoryError if a
    parent is a file; PermissionError if the nearest existing parent is not writable.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{option} {path} is a folder, not a file; name a file, inside it or elsewhere")
    _check_creatable(path, option)
    return path


def make_run_dir(path: str | Path, option: str = "--out") -> Path:
    """Create the output directory `path` (and its parents) if needed; returns it.

    Args:
        path: the directory a command writes its files into; an existing one is reused as it is.
        option: the command-line option that named it, quoted in the error.
    Raises:
        NotADirectoryError: `path` is an existing file (one line, naming `option`).
    """
    path = check_out_dir(path, option)
    path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------------------------------- JSON


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, Enum):
        return _key(key.value)
    if isinstance(key, np.generic):
        return _key(key.item())
    if key is None or isinstance(key, bool):
        return json.dumps(key)  # null, true, false: as json.dumps writes such keys
    return str(key)


def to_jsonable(value: Any) -> Any:
    """`value` as plain JSON data: what `json.dumps(..., allow_nan=False)` accepts and strict parsers read.

    NaN and +-inf become None (null); numpy scalars and arrays, torch tensors (moved to the CPU) become Python
    numbers and lists; Path -> str; Enum -> its value; dataclass -> dict; tuple and set -> list; mapping keys ->
    str. Nested containers are converted throughout. TypeError naming the type for anything else.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, Enum):
        return to_jsonable(value.value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, torch.Tensor):
        return to_jsonable(value.detach().cpu().tolist())  # note: a CPU-GPU sync point for CUDA tensors
    if isinstance(value, PurePath):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    if isinstance(value, Mapping):
        return {_key(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    raise TypeError(f"to_jsonable: a {type(value).__name__} is not JSON data ({value!r:.80})")


def dumps_json(data: Any, indent: int | None = 2) -> str:
    """Strict JSON text of `data` (`to_jsonable`, then `json.dumps(allow_nan=False)`), ending in a newline."""
    return json.dumps(to_jsonable(data), indent=indent, allow_nan=False) + "\n"


def write_json(path: str | Path, data: Any, indent: int | None = 2, fsync: bool = False) -> Path:
    """Write `data` as strict JSON to `path` atomically; creates parents.

    Args:
        path: the JSON file.
        data: anything `to_jsonable` takes (NaN / inf are written as null).
        indent: json.dumps indentation (None: one compact line, for large submissions).
        fsync: flush to disk before the rename (see `atomic_path`).
    Returns:
        `path`.
    """
    return write_text(path, dumps_json(data, indent=indent), fsync=fsync)
