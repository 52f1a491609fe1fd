"""The bad-input catalogue: what a careful new user (or a hostile shared file) can hand each ``hwnas`` verb.

One table, one row per input. Every row must end the same way: exit code 2, exactly one line on
stderr starting ``error: `` (the CLI's :class:`~hwnas.errors.UserError` format, see
``hwnas/cli/__init__.py``), no ``Traceback`` anywhere, and no file created or changed in the
test's folder (the command runs with that folder as its working directory, so a
default output such as ``table.json`` or ``runs/...`` would be caught too).

The commands run in this process (``main()`` with ``sys.argv``, as ``tests/test_cli.py`` does), so
the whole catalogue pays for one torch import. Each row's id says what the input is; ``fragment``,
when given, is a word the error line must contain (it names the problem).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from hwnas.formats import FORMATS
from hwnas.presets import get_space

REPO = Path(__file__).resolve().parents[1]
SHIPPED_TABLE = REPO / "latency_tables" / "data" / "default-host-cpu-tflite-xnnpack.json"
TINY = get_space("default").sample(0).format()


def _default_space_file(f: Files) -> Path:
    """The default space written to a file: a space file is taken as it is, never made for the data (a preset is)."""
    return f.write("space.json", json.dumps(FORMATS["search-space"].stamp(get_space("default").to_json())))


HUGE = "9" * 5000  # a 5,000-digit number: past Python's int-from-text limit
NOT_UTF8 = b"\xff\xfe\xfa not utf-8 \xc3\x28"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Files:
    """Builds the inputs of one case inside the test's folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return path

    def folder(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def missing(self, name: str = "nowhere.json") -> Path:
        return self.root / name

    @property
    def readonly(self) -> Path:
        """A folder nobody here may write into (root ignores permission bits: then a sysfs folder)."""
        if os.geteuid() == 0:
            return Path("/sys")
        path = self.folder("readonly")
        path.chmod(stat.S_IRUSR | stat.S_IXUSR)
        return path

    # ---- latency tables --------------------------------------------------------------------------
    def table_data(self) -> dict:
        """The shipped table, as measured on no machine: no verb re-times its networks (a drift check) first."""
        data = json.loads(SHIPPED_TABLE.read_text())
        data["fingerprint"]["device"] = "hwnas bad-input catalogue CPU"
        return data

    def table(self, name: str = "table.json", edit: Callable[[dict], object] | None = None) -> Path:
        data = self.table_data()
        if edit is not None:
            edit(data)
        return self.write(name, json.dumps(data))

    def table_text(self, name: str, replace: tuple[str, str]) -> Path:
        """The shipped table with one piece of its text replaced (for values JSON cannot hold: NaN)."""
        text = json.dumps(self.table_data())
        assert replace[0] in text
        return self.write(name, text.replace(replace[0], replace[1], 1))

    # ---- device specs ----------------------------------------------------------------------------
    def spec(self, body: str, name: str = "device.toml") -> Path:
        return self.write(name, body)

    def spec_with(self, line: str, backend: str = "onnxruntime") -> Path:
        return self.spec(f'name = "dev"\nbackend = "{backend}"\n{line}\n')

    # ---- images ----------------------------------------------------------------------------------
    def image_folder(self, name: str, per_class: int, classes: int = 2, corrupt: bytes | None = None) -> Path:
        """An ImageFolder tree of 28x28 grayscale PNGs; ``corrupt`` replaces every image's bytes."""
        from PIL import Image

        root = self.folder(name)
        for label in range(classes):
            folder = self.folder(f"{name}/class{label}")
            for index in range(per_class):
                path = folder / f"{index}.png"
                if corrupt is None:
                    Image.new("L", (28, 28), color=index * 7 % 256).save(path)
                else:
                    path.write_bytes(corrupt)
        return root

    def truncated_pngs(self, name: str) -> Path:
        """Ten images per class whose PNG data stops half-way (the header reads, the pixels do not)."""
        root = self.image_folder(name, 10)
        for path in root.rglob("*.png"):
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])
        return root

    # ---- models ----------------------------------------------------------------------------------
    def run_folder(self, name: str = "run", model: bytes = b"", result: str | bytes = "") -> Path:
        self.write(f"{name}/model.pt", model)
        self.write(f"{name}/result.json", result or json.dumps({"arch": TINY}))
        return self.root / name


Args = Callable[[Files], list[object]]


@dataclass(frozen=True)
class Case:
    args: Args
    fragment: str = ""
    xfail: str = ""  # a known gap in a file this catalogue may not change: the reason, and the fix needed


def case(args: Args, fragment: str = "", xfail: str = "") -> Case:
    return Case(args, fragment, xfail)


def _set(key: str, value: object) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        data[key] = value

    return edit


def _entry(field: str, value: object) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        data["entries"][0][field] = value

    return edit


def _network(field: str, value: object) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        for network in data["networks"]:
            network[field] = value

    return edit


def _csv(f: Files, rows: str) -> Path:
    return f.write("networks.csv", "arch,latency_ms\n" + rows)


def _predictor_with_sidecar(f: Files, sidecar: str | bytes) -> list[object]:
    f.write("p.json", sidecar)
    return ["predictor", "eval", f.write("p.skops", b"PK\x03\x04"), "--table", f.table()]


PYTHON_TAG_YAML = "x: !!python/object/apply:os.system ['touch pwned']\n"
ALIAS_BOMB_YAML = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)
)
PUBLIC_KEY = "Conv-input:224x224x3-output:112x112x32"


def _yaml_entry(mean: str) -> str:
    return f"{PUBLIC_KEY}: {{count: 10, mean: {mean}, std: 0.1}}\n"


def _lut_import(f: Files, yaml_text: str | bytes, *more: object) -> list[object]:
    return ["lut", "import", f.write("public.yaml", yaml_text), "--space", "proxylessnas", "--out", f.root / "out.json", *more]


CASES: dict[str, Case] = {
    # ---- the command line itself -------------------------------------------------------------
    "cli: unknown verb": case(lambda f: ["bogus"], "No such command"),
    "cli: unknown option": case(lambda f: ["space", "list", "--bogus"], "No such option"),
    # ---- space -------------------------------------------------------------------------------
    "space show: unknown preset": case(lambda f: ["space", "show", "--preset", "imagenet"], "unknown search space"),
    "space count: empty preset name": case(lambda f: ["space", "count", "--preset", ""], "search space"),
    "space show: preset that is a path": case(
        lambda f: ["space", "show", "--preset", "../../etc/passwd"], "unknown search space"
    ),
    "space sample: -n 0": case(lambda f: ["space", "sample", "-n", "0"], "-n"),
    "space sample: -n not a number": case(lambda f: ["space", "sample", "-n", "abc"], "-n"),
    "space sample: -n astronomically many": case(lambda f: ["space", "sample", "-n", "10" + "0" * 20], "-n"),
    "space sample: 5000-digit seed": case(lambda f: ["space", "sample", "--seed", HUGE], "--seed"),
    # ---- arch --------------------------------------------------------------------------------
    "arch info: empty string": case(lambda f: ["arch", "info", ""], "bad architecture"),
    "arch info: no colon": case(lambda f: ["arch", "info", "default"], "bad architecture"),
    "arch info: no stages": case(lambda f: ["arch", "info", "default:r32"], "no stages"),
    "arch info: 5000-digit width": case(lambda f: ["arch", "info", f"default:r32_c{HUGE}[k3e3]"], "bad stage token"),
    "arch info: 5000-digit resolution": case(lambda f: ["arch", "info", f"default:r{HUGE}_c16[k3e3]"], "resolution"),
    "arch info: zero resolution": case(lambda f: ["arch", "info", "default:r0_c16[k3e3]"], "resolution"),
    "arch info: unknown space": case(lambda f: ["arch", "info", "nosuch:r32_c16[k3e3]"], "unknown search space"),
    "arch info: width the space does not have": case(
        lambda f: ["arch", "info", re.sub(r"_c\d+\[", "_c17[", TINY, count=1)], "17"
    ),
    "arch info: too few stages for the space": case(lambda f: ["arch", "info", "default:r32_c16[k3e3]"], "stage"),
    "arch info: nested brackets": case(lambda f: ["arch", "info", "default:r32_c16[[k3e3]]"], "bad"),
    "arch info: unicode space name": case(lambda f: ["arch", "info", "défault:r32_c16[k3e3]"], "bad space token"),
    "arch info: leading zero": case(lambda f: ["arch", "info", TINY.replace(":r32", ":r032")], "resolution"),
    "arch info: trailing underscore": case(lambda f: ["arch", "info", TINY + "_"], "bad"),
    "arch info: embedded newline": case(lambda f: ["arch", "info", TINY.replace("_", "\n_", 1)], "bad"),
    "arch info: unknown block flag": case(lambda f: ["arch", "info", TINY.replace("]", "x]", 1)], "bad block token"),
    # ---- devices -----------------------------------------------------------------------------
    "devices check: spec that does not exist": case(lambda f: ["devices", "check", f.missing("dev.toml")], "not found"),
    "devices check: empty spec argument": case(lambda f: ["devices", "check", ""], "device spec"),
    "devices check: a folder for the spec": case(lambda f: ["devices", "check", f.folder("specdir")], "folder"),
    "devices check: 0-byte spec": case(lambda f: ["devices", "check", f.spec("")], "required"),
    "devices check: spec not UTF-8": case(lambda f: ["devices", "check", f.spec(NOT_UTF8)], "not UTF-8"),
    "devices check: truncated TOML": case(lambda f: ["devices", "check", f.spec('name = "de')], "malformed TOML"),
    "devices check: spec larger than 20 MB": case(
        lambda f: ["devices", "check", f.spec("# " + "x" * (21 * 1024 * 1024) + "\n")], "MB"
    ),
    "devices check: unknown field": case(lambda f: ["devices", "check", f.spec_with("colour = 'red'")], "unknown field"),
    "devices check: name with ../": case(
        lambda f: ["devices", "check", f.spec('name = "../../../tmp/x"\nbackend = "onnxruntime"\n')], "not allowed"
    ),
    "devices check: name not a string": case(
        lambda f: ["devices", "check", f.spec('name = 5\nbackend = "onnxruntime"\n')], "'name'"
    ),
    "devices check: min_time_s = inf": case(lambda f: ["devices", "check", f.spec_with("min_time_s = inf")], "min_time_s"),
    "devices check: min_time_s = nan": case(lambda f: ["devices", "check", f.spec_with("min_time_s = nan")], "min_time_s"),
    "devices check: min_time_s negative": case(lambda f: ["devices", "check", f.spec_with("min_time_s = -1.0")], "min_time_s"),
    "devices check: warmup = true": case(lambda f: ["devices", "check", f.spec_with("warmup = true")], "warmup"),
    "devices check: threads = 0": case(lambda f: ["devices", "check", f.spec_with("threads = 0")], "threads"),
    "devices check: repeats negative": case(lambda f: ["devices", "check", f.spec_with("repeats = -5")], "repeats"),
    "devices check: repeats 5000 digits": case(lambda f: ["devices", "check", f.spec_with(f"repeats = {HUGE}")], "device spec"),
    "devices check: repeats 10^18": case(lambda f: ["devices", "check", f.spec_with("repeats = 1000000000000000000")], "repeats"),
    "devices check: precision fp64": case(lambda f: ["devices", "check", f.spec_with('precision = "fp64"')], "precision"),
    "devices check: unknown backend": case(lambda f: ["devices", "check", f.spec_with("", backend="coreml")], "coreml"),
    "devices check: options not a table": case(lambda f: ["devices", "check", f.spec_with("options = 3")], "options"),
    "devices check: cores negative": case(lambda f: ["devices", "check", f.spec_with("cores = [-1]")], "cores"),
    "devices check: spec names adb executable": case(
        lambda f: ["devices", "check", f.spec_with('[options]\nadb = "/bin/sh"', backend="android-adb")], "adb"
    ),
    "devices check: spec names benchmark executable": case(
        lambda f: ["devices", "check", f.spec_with('[options]\nbenchmark_model = "/bin/sh"', backend="android-adb")],
        "benchmark_model",
    ),
    "devices check: unknown onnxruntime option": case(
        lambda f: ["devices", "check", f.spec_with('[options]\ngraph_optimization = "ludicrous"')], "graph_optimization"
    ),
    # ---- profile (every one must fail before anything is converted or timed) ----------------
    "profile: unknown spec": case(lambda f: ["profile", "no-such-device"], "not found"),
    "profile: unknown space": case(lambda f: ["profile", "host-ort", "--space", "imagenet"], "unknown search space"),
    "profile: space file holding []": case(
        lambda f: ["profile", "host-ort", "--space", f.write("space.json", "[]")], "JSON object"
    ),
    "profile: space file not UTF-8": case(
        lambda f: ["profile", "host-ort", "--space", f.write("space.json", NOT_UTF8)], "not UTF-8"
    ),
    "profile: 0-byte space file": case(lambda f: ["profile", "host-ort", "--space", f.write("space.json", "")], "JSON"),
    "profile: space file with a wrong field": case(
        lambda f: ["profile", "host-ort", "--space", f.write("space.json", json.dumps({"name": "x", "stages": "many"}))],
        "space",
    ),
    "profile: --workers 0": case(lambda f: ["profile", "host-ort", "--workers", "0"], "--workers"),
    "profile: --networks -1": case(lambda f: ["profile", "host-ort", "--networks", "-1"], "--networks"),
    "profile: --cv-threshold nan": case(lambda f: ["profile", "host-ort", "--cv-threshold", "nan"], "--cv-threshold"),
    "profile: nothing to measure": case(lambda f: ["profile", "host-ort", "--no-space-layers"], "nothing to measure"),
    "profile: --out naming an existing file": case(
        lambda f: ["profile", "host-ort", "--out", f.write("profile.txt", "keep me")], "--out"
    ),
    "profile: --out in a read-only folder": case(lambda f: ["profile", "host-ort", "--out", f.readonly / "profile"], "--out"),
    "profile: device whose runtime is not here": case(lambda f: ["profile", "nvidia-trt"], "tensorrt"),
    # ---- lut show / diff ---------------------------------------------------------------------
    "lut show: missing file": case(lambda f: ["lut", "show", f.missing()], "does not exist"),
    "lut show: a folder": case(lambda f: ["lut", "show", f.folder("tabledir")], "folder"),
    "lut show: 0-byte file": case(lambda f: ["lut", "show", f.write("t.json", "")], "not valid JSON"),
    "lut show: only whitespace": case(lambda f: ["lut", "show", f.write("t.json", "  \n\n")], "not valid JSON"),
    "lut show: not UTF-8": case(lambda f: ["lut", "show", f.write("t.json", NOT_UTF8)], "not UTF-8"),
    "lut show: UTF-16 file": case(lambda f: ["lut", "show", f.write("t.json", "{}".encode("utf-16"))], "not UTF-8"),
    "lut show: truncated JSON": case(
        lambda f: ["lut", "show", f.write("t.json", SHIPPED_TABLE.read_bytes()[:5000])], "not valid JSON"
    ),
    "lut show: top level []": case(lambda f: ["lut", "show", f.write("t.json", "[]")], "JSON object"),
    "lut show: top level null": case(lambda f: ["lut", "show", f.write("t.json", "null")], "JSON object"),
    "lut show: top level string": case(lambda f: ["lut", "show", f.write("t.json", '"table"')], "JSON object"),
    "lut show: empty object": case(lambda f: ["lut", "show", f.write("t.json", "{}")], "schema"),
    "lut show: schema version 99": case(lambda f: ["lut", "show", f.table(edit=_set("schema_version", 99))], "schema"),
    "lut show: entries not a list": case(lambda f: ["lut", "show", f.table(edit=_set("entries", 5))], "malformed"),
    "lut show: entry without op": case(lambda f: ["lut", "show", f.table(edit=lambda d: d["entries"][0].pop("op"))], "malformed"),
    "lut show: NaN median": case(
        lambda f: ["lut", "show", f.table_text("t.json", ('"median_ms": ', '"median_ms": NaN, "was": '))], "NaN"
    ),
    "lut show: Infinity median": case(
        lambda f: ["lut", "show", f.table_text("t.json", ('"median_ms": ', '"median_ms": Infinity, "was": '))], "Infinity"
    ),
    "lut show: 1e400 median": case(
        lambda f: ["lut", "show", f.table_text("t.json", ('"median_ms": ', '"median_ms": 1e400, "was": '))], "positive"
    ),
    "lut show: negative median": case(lambda f: ["lut", "show", f.table(edit=_entry("median_ms", -0.5))], "positive"),
    "lut show: zero median": case(lambda f: ["lut", "show", f.table(edit=_entry("median_ms", 0))], "positive"),
    "lut show: median a word": case(lambda f: ["lut", "show", f.table(edit=_entry("median_ms", "fast"))], "fast"),
    "lut show: 5000-digit median": case(
        lambda f: ["lut", "show", f.table_text("t.json", ('"median_ms": ', f'"median_ms": {HUGE}, "was": '))], "digits"
    ),
    "lut show: duplicate keys in JSON": case(
        lambda f: ["lut", "show", f.write("t.json", '{"schema_version": 1, "schema_version": 1}')], "duplicate key"
    ),
    "lut show: file larger than 20 MB": case(lambda f: ["lut", "show", f.write("t.json", " " * (21 * 1024 * 1024) + "{}")], "MB"),
    "lut show: --top -1": case(lambda f: ["lut", "show", f.table(), "--top", "-1"], "--top"),
    "lut show: whole-network median negative": case(
        lambda f: ["lut", "show", f.table(edit=_network("median_ms", -1.0))],
        "network",
    ),
    "lut diff: second table missing": case(lambda f: ["lut", "diff", f.table(), f.missing()], "does not exist"),
    "lut diff: first table []": case(lambda f: ["lut", "diff", f.write("a.json", "[]"), f.table()], "JSON object"),
    "lut diff: a table with a 0 ms median": case(
        lambda f: ["lut", "diff", f.table("a.json", edit=_entry("median_ms", 0.0)), f.table("b.json")], "positive"
    ),
    # ---- lut import --------------------------------------------------------------------------
    "lut import: missing YAML": case(lambda f: ["lut", "import", f.missing("t.yaml"), "--out", f.root / "out.json"], "t.yaml"),
    "lut import: 0-byte YAML": case(lambda f: _lut_import(f, ""), "public.yaml"),
    "lut import: YAML not UTF-8": case(lambda f: _lut_import(f, NOT_UTF8), "not UTF-8"),
    "lut import: truncated YAML": case(lambda f: _lut_import(f, f"{PUBLIC_KEY}: {{count: 10, mean:"), "not valid YAML"),
    "lut import: YAML top level a list": case(lambda f: _lut_import(f, "- 1\n- 2\n"), "public.yaml"),
    "lut import: YAML python tag": case(lambda f: _lut_import(f, PYTHON_TAG_YAML), "not valid YAML"),
    "lut import: YAML duplicate keys": case(lambda f: _lut_import(f, _yaml_entry("0.5") * 2), "duplicate key"),
    "lut import: YAML alias bomb": case(lambda f: _lut_import(f, ALIAS_BOMB_YAML), "public.yaml"),
    "lut import: negative mean": case(lambda f: _lut_import(f, _yaml_entry("-0.5")), "positive"),
    "lut import: .nan mean": case(lambda f: _lut_import(f, _yaml_entry(".nan")), "positive"),
    "lut import: .inf mean": case(lambda f: _lut_import(f, _yaml_entry(".inf")), "positive"),
    "lut import: 5000-digit mean": case(lambda f: _lut_import(f, _yaml_entry(HUGE)), "digits"),
    "lut import: 400-digit mean": case(lambda f: _lut_import(f, _yaml_entry("9" * 400)), "not a number"),
    "lut import: key that is no layer": case(lambda f: _lut_import(f, "Conv-nonsense: {count: 1, mean: 0.5}\n"), "Conv-nonsense"),
    "lut import: folder without YAML": case(
        lambda f: ["lut", "import", f.folder("empty"), "--out", f.root / "out.json"], "empty"
    ),
    "lut import: unknown space": case(
        lambda f: _lut_import(f, _yaml_entry("0.5"), "--space", "imagenet"), "unknown search space"
    ),
    "lut import: --out an existing folder": case(
        lambda f: ["lut", "import", f.write("p.yaml", _yaml_entry("0.5")), "--out", f.folder("outdir")], "folder"
    ),
    "lut import: --out in a read-only folder": case(
        lambda f: ["lut", "import", f.write("p.yaml", _yaml_entry("0.5")), "--out", f.readonly / "t.json"], "cannot write"
    ),
    # ---- predictor ---------------------------------------------------------------------------
    "predictor fit: table missing": case(
        lambda f: ["predictor", "fit", "--table", f.missing(), "--out", f.root / "p.skops"], "does not exist"
    ),
    "predictor fit: table top level null": case(
        lambda f: ["predictor", "fit", "--table", f.write("t.json", "null"), "--out", f.root / "p.skops"], "JSON object"
    ),
    "predictor fit: unknown kind": case(
        lambda f: ["predictor", "fit", "--table", f.table(), "--out", f.root / "p.skops", "--kind", "oracle"], "oracle"
    ),
    "predictor fit: unknown correction": case(
        lambda f: ["predictor", "fit", "--table", f.table(), "--out", f.root / "p.skops", "--correction", "magic"], "magic"
    ),
    "predictor fit: --holdout 1.5": case(
        lambda f: ["predictor", "fit", "--table", f.table(), "--out", f.root / "p.skops", "--holdout", "1.5"], "holdout"
    ),
    "predictor fit: --holdout -0.1": case(
        lambda f: ["predictor", "fit", "--table", f.table(), "--out", f.root / "p.skops", "--holdout", "-0.1"], "holdout"
    ),
    "predictor fit: --holdout nan": case(
        lambda f: ["predictor", "fit", "--table", f.table(), "--out", f.root / "p.skops", "--holdout", "nan"], "holdout"
    ),
    "predictor fit: --out an existing folder": case(
        lambda f: ["predictor", "fit", "--table", f.table(), "--out", f.folder("pdir")], "folder"
    ),
    "predictor fit: --out a .json path": case(
        lambda f: ["predictor", "fit", "--table", f.table(), "--out", f.root / "p.json"], "sidecar"
    ),
    "predictor fit: --out in a read-only folder": case(
        lambda f: ["predictor", "fit", "--table", f.table(), "--out", f.readonly / "p.skops"], "cannot write"
    ),
    "predictor fit: --plot in a read-only folder": case(
        lambda f: ["predictor", "fit", "--table", f.table(), "--out", f.root / "p.skops", "--plot", f.readonly / "p.png"],
        "cannot write",
    ),
    "predictor fit: whole-network medians negative": case(
        lambda f: ["predictor", "fit", "--table", f.table(edit=_network("median_ms", -1.0)), "--out", f.root / "p.skops"],
        "positive",
    ),
    "predictor fit: a whole network without arch": case(
        lambda f: ["predictor", "fit", "--table", f.table(edit=_network("arch", None)), "--out", f.root / "p.skops"],
        "arch",
    ),
    "predictor fit: networks with NaN medians": case(
        lambda f: [
            "predictor",
            "fit",
            "--table",
            f.table_text("t.json", ('"median_ms": ', '"median_ms": NaN, "was": ')),
            "--out",
            f.root / "p.skops",
        ],
        "NaN",
    ),
    "predictor fit: networks CSV not UTF-8": case(
        lambda f: [
            "predictor",
            "fit",
            "--table",
            f.table(),
            "--out",
            f.root / "p.skops",
            "--networks",
            f.write("n.csv", NOT_UTF8),
        ],
        "not UTF-8",
    ),
    "predictor fit: networks CSV with nan latency": case(
        lambda f: ["predictor", "fit", "--table", f.table(), "--out", f.root / "p.skops", "--networks", _csv(f, f"{TINY},nan\n")],
        "networks.csv",
    ),
    "predictor fit: networks CSV with negative latency": case(
        lambda f: ["predictor", "fit", "--table", f.table(), "--out", f.root / "p.skops", "--networks", _csv(f, f"{TINY},-2\n")],
        "networks.csv",
    ),
    "predictor fit: networks CSV with a bad arch": case(
        lambda f: ["predictor", "fit", "--table", f.table(), "--out", f.root / "p.skops", "--networks", _csv(f, "resnet,0.5\n")],
        "networks.csv",
    ),
    "predictor fit: networks CSV 0 bytes": case(
        lambda f: ["predictor", "fit", "--table", f.table(), "--out", f.root / "p.skops", "--networks", f.write("n.csv", "")],
        "n.csv",
    ),
    "predictor fit: networks JSON []": case(
        lambda f: ["predictor", "fit", "--table", f.table(), "--out", f.root / "p.skops", "--networks", f.write("n.json", "[]")],
        "JSON object",
    ),
    "predictor eval: predictor missing": case(lambda f: ["predictor", "eval", f.missing("p.skops"), "--table", f.table()], "p"),
    "predictor eval: 0-byte predictor, no sidecar": case(
        lambda f: ["predictor", "eval", f.write("p.skops", b""), "--table", f.table()], "sidecar"
    ),
    "predictor eval: sidecar not UTF-8": case(lambda f: _predictor_with_sidecar(f, NOT_UTF8), "not UTF-8"),
    "predictor eval: sidecar []": case(lambda f: _predictor_with_sidecar(f, "[]"), "sidecar"),
    "predictor eval: sidecar with a wrong hash": case(
        lambda f: _predictor_with_sidecar(f, json.dumps({"version": 2, "kind": "calibrated", "model_sha256": "0" * 64})),
        "sidecar",
    ),
    # ---- train (every one must fail before the first step) -----------------------------------
    "train: malformed arch": case(lambda f: ["train", "--arch", "default:r32_c16"], "bad"),
    "train: 5000-digit expansion": case(lambda f: ["train", "--arch", f"default:r32_c16[k3e{HUGE}]"], "bad block token"),
    "train: recipe missing": case(lambda f: ["train", "--arch", TINY, "--recipe", f.missing("r.json")], "does not exist"),
    "train: recipe a folder": case(lambda f: ["train", "--arch", TINY, "--recipe", f.folder("recipe.json")], "folder"),
    "train: 0-byte JSON recipe": case(lambda f: ["train", "--arch", TINY, "--recipe", f.write("r.json", "")], "not valid JSON"),
    "train: recipe not UTF-8": case(lambda f: ["train", "--arch", TINY, "--recipe", f.write("r.json", NOT_UTF8)], "not UTF-8"),
    "train: truncated JSON recipe": case(
        lambda f: ["train", "--arch", TINY, "--recipe", f.write("r.json", '{"lr": 0.1, "epo')], "not valid JSON"
    ),
    "train: recipe []": case(lambda f: ["train", "--arch", TINY, "--recipe", f.write("r.json", "[]")], "mapping"),
    "train: recipe null": case(lambda f: ["train", "--arch", TINY, "--recipe", f.write("r.json", "null")], "mapping"),
    "train: truncated TOML recipe": case(
        lambda f: ["train", "--arch", TINY, "--recipe", f.write("r.toml", "lr = 0.1\nepochs = ")], "malformed TOML"
    ),
    "train: TOML recipe 5000-digit epochs": case(
        lambda f: ["train", "--arch", TINY, "--recipe", f.write("r.toml", f"epochs = {HUGE}\n")], "r.toml"
    ),
    "train: TOML recipe not UTF-8": case(
        lambda f: ["train", "--arch", TINY, "--recipe", f.write("r.toml", NOT_UTF8)], "not UTF-8"
    ),
    "train: JSON recipe lr NaN": case(lambda f: ["train", "--arch", TINY, "--recipe", f.write("r.json", '{"lr": NaN}')], "NaN"),
    "train: JSON recipe lr a string": case(
        lambda f: ["train", "--arch", TINY, "--recipe", f.write("r.json", '{"lr": "fast"}')], "'lr'"
    ),
    "train: JSON recipe epochs true": case(
        lambda f: ["train", "--arch", TINY, "--recipe", f.write("r.json", '{"epochs": true}')], "'epochs'"
    ),
    "train: --set lr=nan": case(lambda f: ["train", "--arch", TINY, "--set", "lr=nan"], "'lr'"),
    "train: --set lr=inf": case(lambda f: ["train", "--arch", TINY, "--set", "lr=inf"], "'lr'"),
    "train: --set epochs=-1": case(lambda f: ["train", "--arch", TINY, "--set", "epochs=-1"], "'epochs'"),
    "train: --set epochs=1.5": case(lambda f: ["train", "--arch", TINY, "--set", "epochs=1.5"], "'epochs'"),
    "train: --set epochs 5000 digits": case(lambda f: ["train", "--arch", TINY, "--set", f"epochs={HUGE}"], "'epochs'"),
    "train: --set batch_size=0": case(lambda f: ["train", "--arch", TINY, "--set", "batch_size=0"], "'batch_size'"),
    "train: --set optimizer=adam": case(lambda f: ["train", "--arch", TINY, "--set", "optimizer=adam"], "adam"),
    "train: --set without =": case(lambda f: ["train", "--arch", TINY, "--set", "epochs"], "key=value"),
    "train: --epochs 0": case(lambda f: ["train", "--arch", TINY, "--epochs", "0"], "'epochs'"),
    "train: --threads -3": case(lambda f: ["train", "--arch", TINY, "--threads", "-3"], "--threads"),
    "train: --data that does not exist": case(lambda f: ["train", "--arch", TINY, "--data", f.missing("imgs")], "does not exist"),
    "train: --data a file": case(lambda f: ["train", "--arch", TINY, "--data", f.write("imgs.png", PNG_MAGIC)], "not a folder"),
    "train: --data an empty folder": case(lambda f: ["train", "--arch", TINY, "--data", f.folder("imgs")], "imgs"),
    "train: --data one image": case(lambda f: ["train", "--arch", TINY, "--data", f.image_folder("imgs", 1, classes=1)], "image"),
    "train: --data one class": case(
        lambda f: ["train", "--arch", TINY, "--data", f.image_folder("imgs", 20, classes=1)], "class"
    ),
    "train: --data corrupt PNGs": case(
        lambda f: ["train", "--arch", TINY, "--data", f.image_folder("imgs", 10, corrupt=PNG_MAGIC + b"garbage")], "png"
    ),
    "train: --data 0-byte PNGs": case(
        lambda f: ["train", "--arch", TINY, "--data", f.image_folder("imgs", 10, corrupt=b"")], "png"
    ),
    "train: --data truncated PNGs": case(lambda f: ["train", "--arch", TINY, "--data", f.truncated_pngs("imgs")], "png"),
    "train: --data train/ and val/ with different classes": case(
        lambda f: [
            "train",
            "--arch",
            TINY,
            "--data",
            f.image_folder("imgs/train", 5) and f.image_folder("imgs/val", 5, classes=3) and f.root / "imgs",
        ],
        "different class folders",
    ),
    "train: --out an existing file": case(
        lambda f: ["train", "--arch", TINY, "--out", f.write("result.txt", "keep me")], "--out"
    ),
    "train: --out in a read-only folder": case(lambda f: ["train", "--arch", TINY, "--out", f.readonly / "run"], "--out"),
    "train: unknown --space": case(lambda f: ["train", "--arch", TINY, "--space", "imagenet"], "unknown search space"),
    "train: --space of another arch": case(lambda f: ["train", "--arch", TINY, "--space", "proxylessnas"], "space"),
    "train: --fresh without --out": case(lambda f: ["train", "--arch", TINY, "--fresh"], "--out"),
    # ---- latency -----------------------------------------------------------------------------
    "latency: neither --device nor --table": case(lambda f: ["latency", TINY], "--device"),
    "latency: table missing": case(lambda f: ["latency", TINY, "--table", f.missing()], "does not exist"),
    "latency: table []": case(lambda f: ["latency", TINY, "--table", f.write("t.json", "[]")], "JSON object"),
    "latency: malformed model": case(lambda f: ["latency", "mobilenet", "--table", f.table()], "mobilenet"),
    "latency: unknown device": case(lambda f: ["latency", TINY, "--device", "no-such-device"], "not found"),
    "latency: 0-byte checkpoint": case(
        lambda f: ["latency", TINY, "--table", f.table(), "--checkpoint", f.write("model.pt", b"")], "model.pt"
    ),
    "latency: checkpoint that is text": case(
        lambda f: ["latency", TINY, "--table", f.table(), "--checkpoint", f.write("model.pt", "weights")], "model.pt"
    ),
    "latency: checkpoint missing": case(
        lambda f: ["latency", TINY, "--table", f.table(), "--checkpoint", f.missing("model.pt")], "does not exist"
    ),
    "latency: unknown torchvision model": case(
        lambda f: ["latency", "torchvision:resnet9000", "--table", f.table()], "resnet9000"
    ),
    "latency: torchvision width not a number": case(
        lambda f: ["latency", "torchvision:mobilenet_v2?width=abc", "--table", f.table()], "width"
    ),
    "latency: torchvision negative resolution": case(
        lambda f: ["latency", "torchvision:mobilenet_v2?resolution=-5", "--table", f.table()], "resolution"
    ),
    "latency: torchvision unknown query key": case(
        lambda f: ["latency", "torchvision:mobilenet_v2?depth=3", "--table", f.table()], "depth"
    ),
    "latency: run folder with 0-byte model.pt": case(lambda f: ["latency", f.run_folder(), "--table", f.table()], "model.pt"),
    "latency: --measure with only a table": case(
        lambda f: ["latency", TINY, "--table", f.table(edit=_set("kind", "imported")), "--measure"], "--device"
    ),
    # ---- export ------------------------------------------------------------------------------
    "export: unknown format": case(lambda f: ["export", TINY, "--format", "coreml", "--out", f.root / "x"], "coreml"),
    "export: empty format": case(lambda f: ["export", TINY, "--format", "", "--out", f.root / "x"], "format"),
    "export: --out an existing file": case(lambda f: ["export", TINY, "--out", f.write("export.txt", "keep me")], "--out"),
    "export: --out in a read-only folder": case(lambda f: ["export", TINY, "--out", f.readonly / "export"], "--out"),
    "export: 0-byte checkpoint": case(
        lambda f: ["export", TINY, "--checkpoint", f.write("model.pt", b""), "--out", f.root / "x"], "model.pt"
    ),
    "export: run folder with 0-byte model.pt": case(lambda f: ["export", f.run_folder(), "--out", f.root / "x"], "model.pt"),
    "export: run folder result.json not UTF-8": case(
        lambda f: ["export", f.run_folder(result=NOT_UTF8), "--out", f.root / "x"], "not UTF-8"
    ),
    "export: run folder result.json []": case(
        lambda f: ["export", f.run_folder(result="[]"), "--out", f.root / "x"], "architecture"
    ),
    "export: path that does not exist": case(lambda f: ["export", f.missing("run"), "--out", f.root / "x"], "run"),
    "export: unknown device": case(lambda f: ["export", TINY, "--device", "no-such-device", "--out", f.root / "x"], "not found"),
    "export: --data one image": case(
        lambda f: ["export", TINY, "--data", f.image_folder("imgs", 1, classes=1), "--out", f.root / "x"], "image"
    ),
    "export: --images 0": case(lambda f: ["export", TINY, "--images", "0", "--out", f.root / "x"], "--images"),
    # ---- prune -------------------------------------------------------------------------------
    "prune: --budget flops=0": case(lambda f: ["prune", TINY, "--budget", "flops=0"], "positive"),
    "prune: --budget flops=1.5": case(lambda f: ["prune", TINY, "--budget", "flops=1.5"], "ratio"),
    "prune: --budget flops=nan": case(lambda f: ["prune", TINY, "--budget", "flops=nan"], "positive"),
    "prune: --budget flops=abc": case(lambda f: ["prune", TINY, "--budget", "flops=abc"], "not a number"),
    "prune: --budget unknown kind": case(lambda f: ["prune", TINY, "--budget", "energy=0.5"], "expected"),
    "prune: --budget without =": case(lambda f: ["prune", TINY, "--budget", "0.5"], "expected"),
    "prune: latency budget without device": case(lambda f: ["prune", TINY, "--budget", "latency-ms=0.5"], "--device"),
    "prune: latency budget -1 ms": case(
        lambda f: ["prune", TINY, "--budget", "latency-ms=-1", "--device", "host-tflite"], "positive"
    ),
    "prune: latency budget inf": case(
        lambda f: ["prune", TINY, "--budget", "latency-ms=inf", "--device", "host-tflite"], "positive"
    ),
    "prune: unknown reward": case(lambda f: ["prune", TINY, "--budget", "flops=0.5", "--reward", "accuracy"], "--reward"),
    "prune: unknown importance": case(lambda f: ["prune", TINY, "--budget", "flops=0.5", "--importance", "l3"], "--importance"),
    "prune: --finetune-lr negative": case(
        lambda f: ["prune", TINY, "--budget", "flops=0.5", "--finetune-lr", "-1", "--out", f.root / "p"], "lr"
    ),
    "prune: --finetune-lr nan": case(
        lambda f: ["prune", TINY, "--budget", "flops=0.5", "--finetune-lr", "nan", "--out", f.root / "p"], "lr"
    ),
    "prune: --table []": case(
        lambda f: ["prune", TINY, "--budget", "flops=0.5", "--table", f.write("t.json", "[]"), "--out", f.root / "p"],
        "JSON object",
    ),
    "prune: 0-byte checkpoint": case(
        lambda f: ["prune", TINY, "--budget", "flops=0.5", "--checkpoint", f.write("model.pt", b""), "--out", f.root / "p"],
        "model.pt",
    ),
    "prune: --out an existing file": case(
        lambda f: ["prune", TINY, "--budget", "flops=0.5", "--out", f.write("prune.txt", "keep me")], "--out"
    ),
    "prune: --data one image": case(
        lambda f: ["prune", TINY, "--budget", "flops=0.5", "--data", f.image_folder("imgs", 1, classes=1), "--out", f.root / "p"],
        "image",
    ),
    # ---- search ------------------------------------------------------------------------------
    "search: --budget-ms 0": case(lambda f: ["search", "--device", "host-tflite", "--budget-ms", "0"], "--budget-ms"),
    "search: --budget-ms -1": case(lambda f: ["search", "--device", "host-tflite", "--budget-ms", "-1"], "--budget-ms"),
    "search: --budget-ms nan": case(lambda f: ["search", "--device", "host-tflite", "--budget-ms", "nan"], "--budget-ms"),
    "search: --budget-ms inf": case(lambda f: ["search", "--device", "host-tflite", "--budget-ms", "inf"], "--budget-ms"),
    "search: --budget-ms abc": case(lambda f: ["search", "--device", "host-tflite", "--budget-ms", "abc"], "--budget-ms"),
    "search: unknown strategy": case(
        lambda f: ["search", "--device", "host-tflite", "--budget-ms", "1", "--strategy", "genetic"], "genetic"
    ),
    "search: unknown reward": case(
        lambda f: ["search", "--device", "host-tflite", "--budget-ms", "1", "--reward", "max"], "--reward"
    ),
    "search: reward with a word": case(
        lambda f: ["search", "--device", "host-tflite", "--budget-ms", "1", "--reward", "-0.07,abc"], "--reward"
    ),
    "search: reward nan exponent": case(
        lambda f: ["search", "--device", "host-tflite", "--budget-ms", "1", "--reward", "nan,-0.07"], "--reward"
    ),
    "search: unknown device": case(lambda f: ["search", "--device", "no-such-device", "--budget-ms", "1"], "not found"),
    "search: unknown space": case(
        lambda f: ["search", "--device", "host-tflite", "--budget-ms", "1", "--space", "imagenet"], "unknown search space"
    ),
    "search: --workers and --ray": case(
        lambda f: ["search", "--device", "host-tflite", "--budget-ms", "1", "--workers", "2", "--ray", "local"], "--ray"
    ),
    "search: --margin 1.5": case(
        lambda f: ["search", "--device", "host-tflite", "--budget-ms", "1", "--margin", "1.5"], "--margin"
    ),
    "search: --margin -0.5": case(
        lambda f: ["search", "--device", "host-tflite", "--budget-ms", "1", "--margin", "-0.5"], "--margin"
    ),
    "search: --margin nan": case(
        lambda f: ["search", "--device", "host-tflite", "--budget-ms", "1", "--margin", "nan"], "--margin"
    ),
    "search: --data one image": case(
        lambda f: ["search", "--device", "host-tflite", "--budget-ms", "1", "--data", f.image_folder("imgs", 1, classes=1)],
        "image",
    ),
    "search: --table []": case(
        lambda f: ["search", "--device", "host-tflite", "--budget-ms", "1", "--table", f.write("t.json", "[]")], "JSON object"
    ),
    "search: budget no network meets": case(
        lambda f: ["search", "--device", "host-tflite", "--budget-ms", "0.000001"], "fastest"
    ),
    "search: --out an existing file": case(
        lambda f: ["search", "--device", "host-tflite", "--budget-ms", "5", "--out", f.write("s.txt", "x")],
        "--out",
    ),
    "search: --supernet folder that does not exist": case(
        lambda f: ["search", "--device", "host-tflite", "--budget-ms", "1", "--supernet", f.missing("sn")], "no such folder"
    ),
    "search: --supernet folder without supernet.json": case(
        lambda f: ["search", "--device", "host-tflite", "--budget-ms", "1", "--supernet", f.folder("sn")], "not a supernet folder"
    ),
    "search: --supernet of another space than --space": case(
        lambda f: _supernet_search(f, "--space", "mnasnet"), "is of space 'default'"
    ),
    "search: --supernet supernet.json from a newer hwnas": case(
        lambda f: ["search", "--device", "host-tflite", "--budget-ms", "1", "--supernet", _supernet(f, version=9)],
        "upgrade hwnas",
    ),
    "search: --supernet and --ray": case(lambda f: _supernet_search(f, "--ray", "local"), "--ray"),
    "search: --supernet-bn-images 513": case(
        lambda f: _supernet_search(f, "--supernet-bn-images", "513"), "--supernet-bn-images"
    ),
    # ---- run ---------------------------------------------------------------------------------
    "run: --budget-ms 0": case(lambda f: ["run", "--budget-ms", "0", "--out", f.root / "r"], "budget"),
    "run: --budget-ms -1": case(lambda f: ["run", "--budget-ms", "-1", "--out", f.root / "r"], "budget"),
    "run: --budget-ms nan": case(lambda f: ["run", "--budget-ms", "nan", "--out", f.root / "r"], "budget"),
    "run: --budget-ms abc": case(lambda f: ["run", "--budget-ms", "abc", "--out", f.root / "r"], "--budget-ms"),
    "run: config missing": case(lambda f: ["run", "--config", f.missing("run.toml"), "--out", f.root / "r"], "does not exist"),
    "run: config not UTF-8": case(
        lambda f: ["run", "--config", f.write("run.toml", NOT_UTF8), "--out", f.root / "r"], "not UTF-8"
    ),
    "run: config truncated": case(
        lambda f: ["run", "--config", f.write("run.toml", "[search]\ntrials = "), "--out", f.root / "r"], "malformed TOML"
    ),
    "run: config unknown key": case(
        lambda f: ["run", "--config", f.write("run.toml", "colour = 'red'\n"), "--out", f.root / "r"], "colour"
    ),
    "run: prune.episodes -1": case(
        lambda f: ["run", "--config", f.write("run.toml", "[prune]\nepisodes = -1\n"), "--out", f.root / "r"], "0: no pruning"
    ),
    "run: unknown device": case(lambda f: ["run", "--device", "no-such-device", "--out", f.root / "r"], "not found"),
    "run: unknown space": case(lambda f: ["run", "--space", "imagenet", "--out", f.root / "r"], "unknown search space"),
    "run: --out an existing file": case(lambda f: ["run", "--out", f.write("run.txt", "keep me")], "--out"),
    "run: --data one image": case(
        lambda f: ["run", "--data", f.image_folder("imgs", 1, classes=1), "--out", f.root / "r"], "image"
    ),
    # ---- report ------------------------------------------------------------------------------
    "report: folder that does not exist": case(lambda f: ["report", f.missing("run")], "run folder"),
    "report: a file": case(lambda f: ["report", f.write("run.txt", "x")], "run folder"),
    "report: folder without config.toml": case(lambda f: ["report", f.folder("run")], "config.toml"),
    "report: run folder whose stages never ran": case(
        lambda f: ["report", f.write("run/config.toml", NOT_UTF8).parent], "has not finished"
    ),
    "report: stage record not UTF-8": case(
        lambda f: ["report", f.write("run/stages/device.json", NOT_UTF8).parent.parent] if f.write("run/config.toml", "") else [],
        "not UTF-8",
    ),
    # ---- supernet (train: every one must fail before the first step and before --out is made) ----
    "supernet train: --epochs 0": case(lambda f: ["supernet", "train", "--epochs", "0", "--out", f.root / "sn"], "'epochs'"),
    "supernet train: unknown --space": case(
        lambda f: ["supernet", "train", "--space", "imagenet", "--out", f.root / "sn"], "unknown search space"
    ),
    "supernet train: no --out": case(lambda f: ["supernet", "train"], "--out"),
    "supernet train: --out an existing file": case(
        lambda f: ["supernet", "train", "--out", f.write("supernet.txt", "keep me")], "--out"
    ),
    "supernet train: --out in a read-only folder": case(lambda f: ["supernet", "train", "--out", f.readonly / "sn"], "--out"),
    "supernet train: --out under a file": case(
        lambda f: ["supernet", "train", "--out", f.write("supernet.txt", "keep me") / "sn"], "--out"
    ),
    "supernet train: --subnets -1": case(lambda f: ["supernet", "train", "--subnets", "-1", "--out", f.root / "sn"], "--subnets"),
    "supernet train: --set mixup=0.2 (not applied to a supernet)": case(
        lambda f: ["supernet", "train", "--set", "mixup=0.2", "--out", f.root / "sn"], "'mixup'"
    ),
    "supernet train: --data of other channels and classes than a space file's": case(
        lambda f: [
            "supernet",
            "train",
            "--space",
            _default_space_file(f),
            "--data",
            f.image_folder("imgs", 10),
            "--out",
            f.root / "sn",
        ],
        "set them to",
    ),
    "supernet eval: folder that does not exist": case(
        lambda f: ["supernet", "eval", f.missing("sn"), "--arch", "largest"], "no such folder"
    ),
    "supernet eval: folder without supernet.json": case(
        lambda f: ["supernet", "eval", f.folder("sn"), "--arch", "largest"], "not a supernet folder"
    ),
    "supernet eval: malformed --arch": case(lambda f: ["supernet", "eval", _supernet(f), "--arch", "default:r32_c16"], "bad"),
    "supernet eval: --arch of another space": case(
        lambda f: ["supernet", "eval", _supernet(f), "--arch", get_space("mnasnet").sample(0).format()], "space"
    ),
    "supernet eval: supernet.json []": case(
        lambda f: ["supernet", "eval", _supernet(f, info="[]"), "--arch", "largest"], "JSON object"
    ),
    "supernet eval: supernet.json from a newer hwnas": case(
        lambda f: ["supernet", "eval", _supernet(f, version=9), "--arch", "largest"], "upgrade hwnas"
    ),
    "supernet eval: supernet.pt of another space": case(
        lambda f: ["supernet", "eval", _supernet(f, weights=_other_supernet_weights()), "--arch", "largest"], "does not fit"
    ),
    "supernet eval: supernet.pt a zip bomb": case(
        lambda f: ["supernet", "eval", _supernet(f, weights=_bomb(f)), "--arch", "largest"], "zip bomb"
    ),
    # ---- files of another hwnas (schema versions) and zip bombs ----------------------------------
    "export: run folder result.json from a newer hwnas": case(
        lambda f: ["export", f.run_folder(result=json.dumps({"schema_version": 9, "arch": TINY})), "--out", f.root / "x"],
        "upgrade hwnas",
    ),
    "export: pruned folder from a newer hwnas": case(
        lambda f: ["export", _pruned_folder(f, version=9), "--out", f.root / "x"], "upgrade hwnas"
    ),
    "export: pruned folder of version 0": case(
        lambda f: ["export", _pruned_folder(f, version=0), "--out", f.root / "x"], "older"
    ),
    "export: run folder model.pt a zip bomb": case(
        lambda f: ["export", f.run_folder(model=_bomb(f)), "--out", f.root / "x"], "zip bomb"
    ),
    "latency: run folder model.pt a zip bomb": case(
        lambda f: ["latency", f.run_folder(model=_bomb(f)), "--table", f.table()], "zip bomb"
    ),
    "prune: --checkpoint a zip bomb": case(
        lambda f: ["prune", TINY, "--budget", "flops=0.5", "--checkpoint", f.write("model.pt", _bomb(f)), "--out", f.root / "p"],
        "zip bomb",
    ),
    "devices check: spec from a newer hwnas": case(
        lambda f: ["devices", "check", f.spec('schema_version = 9\nname = "dev"\nbackend = "onnxruntime"\n')], "newer"
    ),
    "devices check: spec schema_version a string": case(
        lambda f: ["devices", "check", f.spec('schema_version = "1"\nname = "dev"\nbackend = "onnxruntime"\n')], "whole number"
    ),
    "train: recipe from a newer hwnas": case(
        lambda f: ["train", "--arch", TINY, "--recipe", f.write("r.toml", "schema_version = 9\nlr = 0.1\n")], "upgrade hwnas"
    ),
    "train: --space file from a newer hwnas": case(
        lambda f: ["train", "--arch", TINY, "--space", f.write("space.json", json.dumps({"schema_version": 9}))], "newer"
    ),
    "run: config from a newer hwnas": case(
        lambda f: ["run", "--config", f.write("run.toml", "schema_version = 9\n"), "--out", f.root / "r"], "upgrade hwnas"
    ),
    "predictor eval: sidecar of version 1": case(
        lambda f: _predictor_with_sidecar(f, json.dumps({"sidecar_version": 1})), "refit it"
    ),
    "lut show: table of schema version 0": case(lambda f: ["lut", "show", f.table(edit=_set("schema_version", 0))], "older"),
    "export: pruned folder whose history names a layer that does not exist": case(
        lambda f: ["export", _pruned_history(f, [["features.99.conv", True, [0, 1]]]), "--out", f.root / "x"], "does not rebuild"
    ),
}


def _bomb(f: Files) -> bytes:
    """A real torch.save archive of a 32 MB tensor, deflated to ~35 KB (tests/inputs.py)."""
    from inputs import torch_zip_bomb

    path = torch_zip_bomb(f.root.parent / "bomb.pt", megabytes=32)
    return path.read_bytes()


def _supernet(f: Files, version: int | None = None, info: str | None = None, weights: bytes | None = None) -> Path:
    """A real supernet folder of the default space (untrained), with its description or weights replaced when given."""
    import torch

    from hwnas.recipe import Recipe
    from hwnas.supernet import Supernet
    from hwnas.supernet.store import INFO_FILE, WEIGHTS_FILE, save_supernet

    folder = f.root / "sn"
    torch.manual_seed(0)
    described = save_supernet(
        folder, Supernet(get_space("default")), data={}, recipe=Recipe(), seed=0, method={}, curve=[], wall_time_s=0.0
    )
    if version is not None:
        info = json.dumps(described | {"schema_version": version})
    if info is not None:
        f.write(f"sn/{INFO_FILE}", info)
    if weights is not None:
        f.write(f"sn/{WEIGHTS_FILE}", weights)
    return folder


def _supernet_search(f: Files, *more: object) -> list[object]:
    """``hwnas search`` on a real (untrained) supernet of the default space, with ``more`` options."""
    return ["search", "--device", "host-tflite", "--budget-ms", "1", "--supernet", _supernet(f), *more]


def _other_supernet_weights() -> bytes:
    """The state dict of a supernet of another space (mnasnet's): a shared folder whose two files do not belong together."""
    import io

    import torch

    from hwnas.supernet import Supernet

    buffer = io.BytesIO()
    torch.save(Supernet(get_space("mnasnet")).state_dict(), buffer)
    return buffer.getvalue()


def _pruned_folder(f: Files, version: int) -> Path:
    spec = {"kind": "hwnas-pruned", "version": version, "base": {"arch": TINY}, "history": [], "input_shape": [1, 1, 32, 32]}
    f.write("pruned/model.pt", b"")
    return f.write("pruned/pruned.json", json.dumps(spec)).parent


def _pruned_history(f: Files, history: list[object]) -> Path:
    """A pruned run folder whose history was edited (the weights a real, empty state dict)."""
    import io

    import torch

    from hwnas.formats import FORMATS

    fmt = FORMATS["pruned-model"]
    spec = {fmt.key: fmt.version, "base": {"arch": TINY}, "history": history, "input_shape": [1, 1, 32, 32]}
    buffer = io.BytesIO()
    torch.save({}, buffer)
    f.write("pruned/model.pt", buffer.getvalue())
    return f.write("pruned/pruned.json", json.dumps(spec)).parent


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(root)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in root.rglob("*")
        if path.is_file() and not path.is_symlink()
    }


def _params() -> list[object]:
    marks = {name: [pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else [] for name, c in CASES.items()}
    return [pytest.param(name, id=name, marks=marks[name]) for name in CASES]


@pytest.mark.parametrize("name", _params())
def test_bad_input_is_one_line_error_with_exit_code_2(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hwnas_in_process
) -> None:
    bad = CASES[name]
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # outside the snapshot: caches are not outputs
    args = bad.args(Files(work))
    before = _snapshot(work)
    try:
        done = hwnas_in_process(*args)
        code, out, err = done.returncode, done.stdout, done.stderr
    finally:
        for path in work.rglob("*"):  # let pytest clean up read-only folders
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)
    assert "Traceback" not in out + err, err
    # a "warning:" line may come first (one class in --data: said, then the mistake it leads to); nothing else may
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning: ")]
    assert code == 2, f"exit {code}; stderr: {err!r}; stdout: {out[-500:]!r}"
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert bad.fragment.lower() in lines[0].lower(), lines[0]
    assert _snapshot(work) == before, "files were created or changed"


def test_catalogue_covers_every_verb_with_100_cases() -> None:
    verbs = {name.split(":")[0].split()[0] for name in CASES}
    assert verbs >= {"space", "arch", "devices", "profile", "lut", "predictor", "train", "latency", "export", "prune"}
    assert verbs >= {"search", "run", "report"}
    assert len(CASES) >= 100


def test_a_good_input_passes_the_same_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hwnas_in_process) -> None:
    """The harness can tell success from failure: a good input exits 0 and prints its answer."""
    monkeypatch.chdir(tmp_path)
    shutil.copy(SHIPPED_TABLE, tmp_path / "t.json")
    done = hwnas_in_process("lut", "show", "t.json", "--top", "1")
    code, out, err = done.returncode, done.stdout, done.stderr
    assert code == 0 and err == "" and "layers" in out
