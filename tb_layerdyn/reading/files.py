"""Where logdirs live: local directories, or any URL TensorBoard's own file layer reads.

TensorBoard reads logdirs through ``tensorboard.compat.tensorflow_stub.io.gfile``: local paths, S3,
and every fsspec URL (``memory://``, ``gs://`` with gcsfs, ...). Reading through the same layer
means every logdir TensorBoard serves, ``read()`` and the tab serve too. Local paths go through
``os`` directly: the stub layer reopens a file for every read.
"""

import os
import posixpath
from typing import Iterator, List, Tuple

from tensorboard.compat.tensorflow_stub.io import gfile


def is_remote(logdir: str) -> bool:
    """Whether ``logdir`` is a URL (``scheme://...``) rather than a local path."""
    return "://" in logdir


def normalize(logdir) -> str:
    """A logdir as a string: local paths made absolute, URLs kept as given (no trailing slash)."""
    text = os.fspath(logdir)
    if is_remote(text):
        return text.rstrip("/") if not text.endswith("://") else text
    return os.path.abspath(text)


def join(directory: str, name: str) -> str:
    """``directory/name`` in the logdir's own separator."""
    if is_remote(directory):
        return posixpath.join(directory, name)
    return os.path.join(directory, name)


def run_directory(logdir: str, run: str) -> str:
    """The directory of a run named as TensorBoard names it (``"."``, ``"a/b"``)."""
    if run == ".":
        return logdir
    if is_remote(logdir):
        return posixpath.join(logdir, run)
    return os.path.join(logdir, *run.split("/"))


def exists(path: str) -> bool:
    return os.path.exists(path) if not is_remote(path) else gfile.exists(path)


def isdir(path: str) -> bool:
    return os.path.isdir(path) if not is_remote(path) else gfile.isdir(path)


def walk_runs(logdir: str) -> Iterator[Tuple[str, List[str]]]:
    """``(run name, event file names sorted)`` for every directory under ``logdir`` that holds
    event files, parents before children, siblings by name.

    A file is an event file when its name contains ``tfevents``, TensorBoard's own test.
    """
    if is_remote(logdir):
        walker = gfile.walk(logdir)
    else:
        walker = os.walk(logdir)
    for directory, subdirectories, filenames in walker:
        subdirectories.sort()
        names = sorted(name for name in filenames if "tfevents" in name)
        if names:
            yield _run_name(logdir, directory), names


def _run_name(logdir: str, directory: str) -> str:
    if is_remote(logdir):
        relative = posixpath.relpath(directory.rstrip("/"), logdir.rstrip("/"))
        return relative
    return os.path.relpath(directory, logdir).replace(os.sep, "/")


def size(path: str) -> int:
    """The file's length in bytes."""
    if is_remote(path):
        return int(gfile.stat(path).length)
    return os.stat(path).st_size


def read_range_into(path: str, offset: int, out) -> memoryview:
    """Bytes of a file from ``offset`` read into ``out`` (a writable buffer; fewer at the file's
    end), returned as a view of ``out``. A reader of many chunks reuses one buffer: each fresh
    ``bytes`` would be page-faulted in, and the kernel zeroes every page before the read fills it."""
    view = memoryview(out).cast("B")
    if not is_remote(path):
        with open(path, "rb") as f:
            f.seek(offset)
            return view[: f.readinto(view) or 0]
    data = read_range(path, offset, len(view))
    view[: len(data)] = data
    return view[: len(data)]


def read_range(path: str, offset: int, length: int) -> bytes:
    """Up to ``length`` bytes of a file from ``offset`` (fewer at its end)."""
    if not is_remote(path):
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(length)
    filesystem = gfile.get_filesystem(path)
    if isinstance(filesystem, gfile.FSSpecFileSystem):
        import fsspec  # present whenever TensorBoard reads fsspec URLs

        fs, inner = fsspec.core.url_to_fs(path)
        return bytes(fs.cat_file(inner, start=offset, end=offset + length))
    # TensorBoard's S3 layer continues from a byte offset.
    data, _ = filesystem.read(path, binary_mode=True, size=length, continue_from={"byte_offset": offset})
    return bytes(data)
