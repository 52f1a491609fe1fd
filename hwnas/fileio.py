"""Reading and writing the files hwnas keeps and shares, in one place.

Writes are atomic (temporary file beside the target, then rename): a killed run leaves the old
file or the new one, never half of one. Reads of user-supplied JSON, TOML and YAML go through
:func:`read_json`, :func:`read_toml` and :func:`read_yaml`: a missing, unreadable, oversized,
non-UTF-8 or malformed file is a one-line :class:`UserError` naming it and what it was meant to
be, never a traceback. YAML is read with the safe loader only, and duplicate keys are refused in
JSON and YAML alike (a merged duplicate silently changes a latency table).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hwnas.errors import OutOfResources, UserError

MAX_FILE_BYTES = 20 * 1024 * 1024  # every spec, table, recipe, space and sidecar hwnas writes is far smaller


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(temp_path)`` on a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"cannot write {path}: it is a folder; name a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(handle)
    except OSError as error:
        raise UserError(f"cannot write to {path.parent}: {error.strerror}") from None
    temp = Path(temp_name)
    try:
        write(temp)
        os.chmod(temp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the permissions open() would
        os.replace(temp, path)
    except (OSError, RuntimeError) as error:
        if not is_out_of_space(error):
            raise
        raise OutOfResources(f"{describe_out_of_space(error)} writing {path}: {NOTHING_LOST}") from None
    finally:
        temp.unlink(missing_ok=True)
    return path


NOTHING_LOST = "nothing stored before was lost; free some space and run the same command again to continue"
_FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
# what torch.save and SQLite say when the disk or a file-size limit stops a write (they do not raise OSError)
_FULL_MESSAGES = ("unexpected pos", "file write failed", "database or disk is full", "disk i/o error", "file too large")


def is_out_of_space(error: BaseException) -> bool:
    """Did ``error`` come from a full disk or a file-size limit (``ulimit -f``), whatever library raised it?"""
    if isinstance(error, OSError) and error.errno in _FULL_ERRNOS:
        return True
    text = str(error).lower()
    return any(message in text for message in _FULL_MESSAGES)


def describe_out_of_space(error: BaseException) -> str:
    if (isinstance(error, OSError) and error.errno == errno.EFBIG) or "too large" in str(error).lower():
        return "the file-size limit was reached"
    return "the disk is full (or a file-size limit was reached)"


def check_writable_folder(path: Path, what: str = "--out") -> None:
    """Refuse, before any work starts, an output folder that cannot be made or written into.

    A file of that name, a file on the way to it or a folder this user cannot write is one line
    naming ``what`` (the option). Nothing is created: a probe folder is made and removed again.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} is a file; name a folder")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"cannot make {what} {path}: {existing} is a file")
    try:
        tempfile.TemporaryDirectory(prefix=".hwnas-probe-", dir=existing).cleanup()
    except OSError as error:
        raise UserError(f"cannot write to {what} {path}: {error.strerror} in {existing}") from None


def atomic_write_json(path: Path, data: Any) -> Path:
    """JSON that every reader accepts: NaN and infinities are refused here rather than written."""
    try:
        text = json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n"
    except ValueError as error:
        raise UserError(f"refusing to write {path}: {error} (a NaN or infinite number)") from None
    return atomic_write(path, lambda temp: temp.write_text(text))


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def read_text(path: Path, what: str, max_bytes: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of ``path`` (``what`` names it in errors: "device spec", "recipe file", ...)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise UserError(f"{what} {path} is {size / 1e6:.1f} MB, more than the {max_bytes / 1e6:.0f} MB hwnas reads")
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise UserError(f"cannot read {what} {path}: it does not exist") from None
    except IsADirectoryError:
        raise UserError(f"{what} {path} is a folder, not a file") from None
    except OSError as error:
        raise UserError(f"cannot read {what} {path}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise UserError(f"{what} {path} is not UTF-8 text (byte {error.start})") from None


def read_json(path: Path, what: str) -> Any:
    text = read_text(path, what)
    try:
        return json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as error:
        raise UserError(f"{what} {path} is not valid JSON ({error})") from None
    except ValueError as error:  # NaN / Infinity, or an integer too long to convert
        raise UserError(f"{what} {path}: {error}") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a repeated key (``json`` would keep the last one without a word)."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"duplicate key {key!r}")
        found[key] = value
    return found


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number hwnas accepts")


def read_toml(path: Path, what: str) -> dict[str, Any]:
    text = read_text(path, what)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"{what} {path} is malformed TOML: {error}") from None
    except ValueError as error:  # e.g. an integer too long to convert
        raise UserError(f"{what} {path}: {error}") from None


def read_yaml(path: Path, what: str) -> Any:
    """Safe-loaded YAML (no Python tags), refusing duplicate keys."""
    import yaml

    text = read_text(path, what)
    try:
        return yaml.load(text, Loader=_unique_key_loader())  # a SafeLoader subclass: no Python tags
    except yaml.YAMLError as error:
        raise UserError(f"{what} {path} is not valid YAML ({str(error).splitlines()[0]})") from None
    except (ValueError, OverflowError) as error:  # e.g. an integer too long to convert
        raise UserError(f"{what} {path}: {error}") from None


def _unique_key_loader() -> type:
    """A ``yaml.SafeLoader`` that refuses a mapping with a repeated key (built on use: PyYAML loads lazily)."""
    import yaml

    class UniqueKeySafeLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return UniqueKeySafeLoader


# Zip archives hwnas reads: torch's .pt files and skops predictors. Both are written uncompressed
# (ZIP_STORED), so what they unpack to is about their size on disk; a zip bomb unpacks to 1000x.
MAX_UNPACKED_BYTES = 4 * 1024**3  # far beyond any model file hwnas writes (mobilenet_v3_large: 22 MB)
MAX_PACKING_RATIO = 20  # unpacked / packed: stored entries are ~1, deflated weights ~1.1
MAX_ARCHIVE_ENTRIES = 100_000


def check_archive(source: Path | bytes, what: str, max_bytes: int = MAX_UNPACKED_BYTES) -> None:
    """Refuse a zip archive that would unpack to more than ``max_bytes``, or far more than its own size.

    Called before ``torch.load`` and ``skops.io.load``, which inflate whatever an entry holds: a
    shared 3 MB file must not take gigabytes of memory. Only the central directory is read (the
    declared sizes), nothing is unpacked. A file that is not a zip passes: the loader's own error
    names it (and torch's unpickler with ``weights_only=True`` runs no code on a legacy file).
    """
    import io
    import zipfile

    name = "bytes" if isinstance(source, bytes | bytearray) else str(source)
    try:
        with zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes | bytearray) else source) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return
    packed_size = len(source) if isinstance(source, bytes | bytearray) else Path(source).stat().st_size
    unpacked = sum(entry.file_size for entry in entries)
    if len(entries) > MAX_ARCHIVE_ENTRIES:
        raise UserError(f"{what} {name} is a zip of {len(entries)} entries, more than the {MAX_ARCHIVE_ENTRIES} hwnas opens")
    if unpacked > max_bytes:
        raise UserError(
            f"{what} {name} would unpack to {unpacked / 1e9:.1f} GB, more than the {max_bytes / 1e9:.1f} GB hwnas opens"
        )
    if unpacked > MAX_PACKING_RATIO * max(packed_size, 1 << 20):
        raise UserError(
            f"{what} {name} would unpack to {unpacked / 1e6:.0f} MB from {packed_size / 1e6:.1f} MB "
            f"({unpacked / max(packed_size, 1):.0f}x): a zip bomb, refusing to open it"
        )


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MB chunks (model files can be large)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def text_sha256(text: str, digits: int = 64) -> str:
    """SHA-256 of a string (ids and content hashes), cut to ``digits`` hex digits."""
    return hashlib.sha256(text.encode()).hexdigest()[:digits]
