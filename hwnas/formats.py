"""Every file format hwnas writes or reads, with its schema version and what to do with another version.

Why one table: later stages trust what earlier ones wrote, and people share the files (a table, a
predictor, a pruned model). A file of another hwnas must be refused in one line that says what to
do, either upgrade hwnas (the file is newer) or remake the file (it is older), and never misread.
nn-Meter's pickled predictors and OFA's YAML loader broke without a word across library versions;
a version number written into every file, checked before its contents are used, is the cure.

Rules:

- A JSON or TOML file hwnas writes carries ``key: version`` at its top level (``schema_version``
  unless the format named another key before this table existed). SQLite stores keep it in their
  ``meta`` table (the search store: the study's ``hwnas_schema_version`` attribute).
- A file without the key is read as ``unversioned`` (version 1 for formats whose layout has not
  changed since versions were introduced; ``None`` where the key was always written, so a missing
  one means a foreign or damaged file).
- Files people write by hand (device specs, recipes, search spaces, run configs) may carry the key;
  without it they are read as the current version.
- Foreign formats (OFA / ProxylessNAS latency YAML, ONNX and TFLite files) carry no version of ours:
  they are recognised by their shape and listed in :data:`FOREIGN`.

``check`` raises; ``stamp`` writes the current version; ``read_json`` / ``read_toml`` read, check and
drop the key, so the caller sees exactly the fields it always did.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwnas import fileio
from hwnas.errors import UserError

VERSION_KEY = "schema_version"


@dataclass(frozen=True)
class FileFormat:
    """One format: its name, what errors call it, the version this hwnas writes and reads, and how to remake an old file."""

    name: str
    what: str
    version: int
    remake: str
    key: str = VERSION_KEY
    unversioned: int | None = 1
    hand_written: bool = False

    def stamp(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """``data`` with this format's version first (the key is replaced if present)."""
        return {self.key: self.version, **{k: v for k, v in data.items() if k != self.key}}

    def found_version(self, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return None
        if self.key not in data:
            return self.version if self.hand_written else self.unversioned
        return data[self.key]

    def check(self, data: Any, source: str | Path, *, stored_as_text: bool = False) -> None:
        """Raise a one-line :class:`UserError` unless ``data`` (a parsed file, or a store's ``meta`` table) is this version.

        ``stored_as_text``: the values are text (SQLite ``meta`` tables), so ``"1"`` means 1; in a JSON or TOML file
        a quoted version is refused.
        """
        found = self.found_version(data)
        if stored_as_text and isinstance(found, str) and found.isdigit():
            found = int(found)
        whole = isinstance(found, int) and not isinstance(found, bool)
        if whole and found == self.version:
            return
        where = f"{self.what} {source}" if str(source) else self.what
        if not whole:
            shown = "no schema version" if found is None else f"schema version {found!r}, not a whole number"
            raise UserError(f"{where} has {shown} ({self.key}); it is not a {self.what} this hwnas wrote: {self.remake}")
        if found > self.version:
            raise UserError(
                f"{where} is schema version {found}, newer than the {self.version} this hwnas reads: "
                "upgrade hwnas (pip install -U hwnas) to read it"
            )
        raise UserError(f"{where} is schema version {found}, older than the {self.version} this hwnas reads: {self.remake}")

    def strip(self, data: dict[str, Any], source: str | Path) -> dict[str, Any]:
        """Check ``data`` and return it without the version key."""
        self.check(data, source)
        return {k: v for k, v in data.items() if k != self.key}


def _table(*formats: FileFormat) -> dict[str, FileFormat]:
    found: dict[str, FileFormat] = {}
    for fmt in formats:
        if fmt.name in found:
            raise ValueError(f"file format {fmt.name!r} listed twice")
        found[fmt.name] = fmt
    return found


FORMATS: dict[str, FileFormat] = _table(
    # written by hwnas, read back by later stages and by whoever the file is shared with
    FileFormat("latency-table", "latency table", 1, "profile the device again (hwnas profile) or re-import it (hwnas lut import)",
               unversioned=None),
    FileFormat("profile-store", "profile store", 1, "profile into another --out folder (or delete the store)", unversioned=None),
    FileFormat("predictor-sidecar", "predictor sidecar", 2, "refit it with hwnas predictor fit", key="sidecar_version",
               unversioned=None),
    FileFormat("training-checkpoint", "training checkpoint", 1, "re-run with --fresh to start over, or give another --out",
               key="version", unversioned=None),
    FileFormat("run-result", "run result", 1, "train it again (hwnas train --out DIR)"),
    FileFormat("pruned-model", "pruned model description", 1, "prune it again (hwnas prune)", key="version", unversioned=None),
    FileFormat("pruning-store", "pruning store", 1, "use another --out folder, or delete the store to start over"),
    FileFormat("pruning-report", "pruning report", 1, "prune it again (hwnas prune)"),
    FileFormat("search-store", "search store", 1, "use another --out (or --study) for a new search", key="hwnas_schema_version"),
    FileFormat("search-result", "search result", 1, "run the search again (hwnas search)"),
    FileFormat("specialize", "specialization report", 1, "run hwnas specialize again into another --out"),
    FileFormat("scale-family", "model family report", 1, "run hwnas scale again into another --out"),
    FileFormat("run-folder", "run folder config", 1, "start it over with --fresh, or give another --out"),
    FileFormat("run-record", "run stage record", 1, "start the run over with --fresh, or give another --out"),
    FileFormat("run-summary", "run summary", 1, "re-run the pipeline (hwnas run --fresh)"),
    FileFormat("model-card", "model card", 1, "export the model again (hwnas export)"),
    FileFormat("accuracy-pairs", "accuracy pairs", 1, "collect the pairs again"),
    FileFormat("supernet", "supernet description", 1, "train the supernet again (hwnas supernet train --out DIR)",
               unversioned=None),
    # written by people (the key is optional: without it the current version is meant)
    FileFormat("device-spec", "device spec", 1, "see devices/specs/*.toml for the current fields", hand_written=True),
    FileFormat("recipe", "recipe file", 1, "see `hwnas train --help` for the current fields", hand_written=True),
    FileFormat("search-space", "search space", 1, "see `hwnas space show --json` for the current layout", hand_written=True),
    FileFormat("run-config", "run config", 1, "see the README's run.toml keys", hand_written=True),
)

# formats of other projects hwnas reads, recognised by their shape (no version of ours to check)
FOREIGN = {
    "ofa-latency-yaml": "OFA / ProxylessNAS public latency tables (hwnas lut import): safe-loaded YAML, duplicate keys refused",
    "onnx": "ONNX models hwnas exported (hwnas latency --measure, profiling): opened by ONNX Runtime, never executed as Python",
    "tflite": "TFLite flatbuffers hwnas exported: opened by the TFLite interpreter",
    "images": "image folders and idx / npz datasets given with --data: decoded by torchvision / numpy (allow_pickle=False)",
}


def get_format(name: str) -> FileFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"no file format {name!r}; known: {', '.join(FORMATS)}") from None


def read_json(path: Path, name: str) -> Any:
    """A JSON object of format ``name``, its version checked and its version key dropped (anything but an object
    is refused)."""
    fmt = get_format(name)
    data = fileio.read_json(path, fmt.what)
    if not isinstance(data, dict):
        raise UserError(f"{fmt.what} {path} holds {type(data).__name__}, not a JSON object")
    return fmt.strip(data, path)


def read_toml(path: Path, name: str) -> dict[str, Any]:
    fmt = get_format(name)
    return fmt.strip(fileio.read_toml(path, fmt.what), path)
