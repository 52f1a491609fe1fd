"""DeviceSpec: a device described in a small TOML file.

Example (``devices/specs/host-ort.toml``)::

    name = "host-cpu-onnxruntime"
    backend = "onnxruntime"
    threads = 1
    precision = "fp32"
    warmup = 20
    repeats = 200
    min_time_s = 0.2        # keep repeating a fast model until this much time is measured
    sessions = 5            # split the runs over this many freshly loaded sessions
    cores = [1]             # pin the measuring process here (default: the last `threads` cores)

    [options]               # backend-specific, checked by the backend
    graph_optimization = "all"
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from hwnas.errors import UserError
from hwnas.fileio import read_toml
from hwnas.formats import FORMATS

PRECISIONS = ("fp32", "fp16", "int8")
MAX_MIN_TIME_S = 60.0  # per measurement; `inf` would time one layer forever
MAX_COUNT = 1_000_000
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")  # a spec's name becomes a folder name: no '/', no '..'

SPECS_DIR = Path(__file__).with_name("specs")


@dataclass(frozen=True)
class DeviceSpec:
    name: str
    backend: str
    threads: int = 1
    precision: str = "fp32"
    warmup: int = 20
    repeats: int = 200
    min_time_s: float = 0.0
    sessions: int = 1
    cores: tuple[int, ...] | None = None
    options: dict[str, Any] = field(default_factory=dict, hash=False)
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or _NAME_RE.fullmatch(self.name) is None:
            raise UserError(
                f"device name {self.name!r} is not allowed: it names folders (runs/profiles/<name>-<space>), so use "
                "letters, digits, '.', '_' and '-' (at most 64, not starting with '.' or '-')"
            )
        if self.precision not in PRECISIONS:
            raise UserError(f"device {self.name!r}: precision {self.precision!r} not in {PRECISIONS}")
        for name in ("threads", "repeats", "sessions"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"device {self.name!r}: {name} must be a whole number >= 1, got {value!r}")
        if not isinstance(self.warmup, int) or isinstance(self.warmup, bool) or self.warmup < 0:
            raise UserError(f"device {self.name!r}: warmup must be a whole number >= 0, got {self.warmup!r}")
        time_ok = isinstance(self.min_time_s, int | float) and not isinstance(self.min_time_s, bool)
        if not time_ok or not 0 <= self.min_time_s <= MAX_MIN_TIME_S:
            raise UserError(
                f"device {self.name!r}: min_time_s must be a number of seconds in [0, {MAX_MIN_TIME_S}], got {self.min_time_s!r}"
            )
        for name in ("threads", "repeats", "sessions", "warmup"):
            if getattr(self, name) > MAX_COUNT:
                raise UserError(f"device {self.name!r}: {name} = {getattr(self, name)} is more than {MAX_COUNT}")
        if self.cores is not None and (not self.cores or any(not isinstance(c, int) or c < 0 for c in self.cores)):
            raise UserError(f"device {self.name!r}: cores must be a non-empty list of core numbers, got {self.cores!r}")

    @classmethod
    def from_toml(cls, path: str | Path) -> DeviceSpec:
        if is_table_device(str(path)):  # a latency table given where a device to run on is needed
            raise UserError(
                f"{path} is a latency table, not a device spec: hwnas search and hwnas specialize take one as --device "
                "for a device that is not here (predicted, not measured); this command needs a device spec (TOML)"
            )
        path = resolve_spec_path(path)
        return cls.from_json(FORMATS["device-spec"].strip(read_toml(path, "device spec"), path), source=str(path))

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = "") -> DeviceSpec:
        known = {f.name for f in fields(cls)} - {"source"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(
                f"device spec {source or data.get('name')}: unknown field {unknown[0]!r}; known: {', '.join(sorted(known))}"
            )
        for required in ("name", "backend"):
            if not isinstance(data.get(required), str):
                raise UserError(f"device spec {source}: field {required!r} is required (a string)")
        values = dict(data)
        if values.get("cores") is not None:
            cores = values["cores"]
            if not isinstance(cores, list) or not all(isinstance(core, int) and core >= 0 for core in cores):
                raise UserError(f"device spec {source}: cores must be a list of CPU numbers, e.g. cores = [1], got {cores!r}")
            values["cores"] = tuple(cores)
        if not isinstance(values.get("options", {}), dict):
            raise UserError(f"device spec {source}: [options] must be a table")
        return cls(**values, source=source)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("source")
        data["cores"] = list(self.cores) if self.cores is not None else None
        return data


def is_table_device(spec_arg: str) -> bool:
    """``--device`` names a latency table file (a device that is not here, predicted only) rather than a spec."""
    return spec_arg.endswith(".json")


def resolve_spec_path(path: str | Path) -> Path:
    """A path, or the name of a shipped spec (``host-ort`` -> ``devices/specs/host-ort.toml``)."""
    candidate = Path(path)
    if candidate.exists():
        return candidate
    shipped = SPECS_DIR / f"{candidate.name.removesuffix('.toml')}.toml"
    if shipped.exists():
        return shipped
    raise UserError(f"device spec {path} not found (shipped specs: {', '.join(shipped_specs())})")


def shipped_specs() -> list[str]:
    return sorted(p.stem for p in SPECS_DIR.glob("*.toml"))
