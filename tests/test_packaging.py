"""The installed shape of hwnas: one import name, light core imports, a wheel that coexists with PyPI's namesakes."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "onnx", "onnxruntime", "ai_edge_litert", "litert_torch", "sklearn")


def python_in(cwd: Path, code: str, executable: str = sys.executable) -> subprocess.CompletedProcess[str]:
    """Run ``code`` from ``cwd`` (outside the checkout, so only the installed package can be found)."""
    return subprocess.run([executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=600)


def loaded_after(tmp_path: Path, statement: str) -> set[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = python_in(tmp_path, code)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_core_values_and_device_specs_import_no_heavy_library(tmp_path: Path) -> None:
    loaded = loaded_after(tmp_path, "import hwnas, hwnas.arch, hwnas.space, hwnas.presets, hwnas.recipe, hwnas.devices.spec")
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_cli_help_and_a_bad_input_error_import_no_heavy_library(tmp_path: Path) -> None:
    for argv in (["--help"], ["lut", "show", str(tmp_path / "missing.json")], ["devices", "check", str(tmp_path / "x.toml")]):
        statement = f"from hwnas.cli import main\nsys.argv = ['hwnas', *{argv!r}]\ntry:\n    main()\nexcept SystemExit:\n    pass"
        loaded = loaded_after(tmp_path, statement)
        assert not loaded & set(HEAVY), (argv, sorted(loaded & set(HEAVY)))


def test_the_pipeline_stages_are_subpackages_and_no_other_top_level_name_exists(tmp_path: Path) -> None:
    result = python_in(
        tmp_path,
        "import importlib, hwnas.devices, hwnas.latency_tables, hwnas.predictors, hwnas.exporters\n"
        "print(hwnas.devices.DeviceSpec.__module__, hwnas.exporters.get_exporter('onnx').format)\n"
        "for name in ('devices', 'latency_tables', 'predictors', 'exporters'):\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "        print('importable', name)\n"
        "    except ModuleNotFoundError:\n"
        "        pass",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["hwnas.devices.spec", "onnx"], result.stdout


@pytest.mark.slow
def test_a_wheel_installs_beside_pypi_predictors_and_exporters(tmp_path: Path) -> None:
    """A plain (non-editable) wheel holds every subpackage and installs no top-level name but ``hwnas``.

    The new environment takes torch and the runtimes from the test's own environment through a
    ``.pth`` line (a second 5 GB install proves nothing more), and PyPI's ``predictors`` and
    ``exporters`` distributions from the package index.
    """
    wheel_dir = tmp_path / "wheel"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheel_dir), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr
    wheel = next(wheel_dir.glob("hwnas-*.whl"))
    top_level = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {name for name in top_level if not name.endswith(".dist-info")} == {"hwnas"}
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"hwnas/devices/specs/host-ort.toml", "hwnas/latency_tables/__init__.py", "hwnas/exporters/formats.py"} <= names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    site = Path(python_in(tmp_path, "import site; print(site.getsitepackages()[0])", python).stdout.strip())
    ours = Path(python_in(tmp_path, "import torch, pathlib; print(pathlib.Path(torch.__file__).parents[1])").stdout.strip())
    (site / "zz-hwnas-test-dependencies.pth").write_text(f"{ours}\n")
    installed = subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", str(wheel)], capture_output=True, text=True, timeout=600
    )
    assert installed.returncode == 0, installed.stderr
    pypi = subprocess.run(
        [python, "-m", "pip", "install", "-q", "predictors==0.0.1", "exporters==0.7.0"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pypi.returncode == 0, pypi.stderr

    result = python_in(
        tmp_path,
        "import importlib.util, json\n"
        "import hwnas.devices, hwnas.latency_tables, hwnas.predictors, hwnas.exporters\n"
        "from hwnas.latency_tables import LatencyTable\n"
        "import predictors\n"
        "origin = lambda name: importlib.util.find_spec(name).origin\n"
        "print(json.dumps({'hwnas': hwnas.__file__, 'formats': hwnas.exporters.list_formats(),\n"
        "    'predictors': predictors.__file__, 'exporters': origin('exporters'), 'hwnas.exporters': origin('hwnas.exporters'),\n"
        "    'tables': len(list((__import__('pathlib').Path(hwnas.latency_tables.__file__).parent / 'data').glob('*.json')))}))",
        python,
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["hwnas"].startswith(str(site)) and "onnx" in found["formats"] and found["tables"] >= 4
    assert found["predictors"].startswith(str(site / "predictors"))
    assert found["exporters"].startswith(str(site / "exporters")) and found["hwnas.exporters"].startswith(str(site / "hwnas"))


def test_every_package_folder_is_listed_for_installation() -> None:
    """A package left out of pyproject's list works in the editable checkout and is missing from a wheel."""
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {name: Path(folder) for name, folder in config["package-dir"].items()}
    found = set()
    for name, folder in folders.items():
        for init in (REPO / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO / folder).parts
            mapped = [other for other, path in folders.items() if (REPO / path) == init.parent and other != name]
            found.add(mapped[0] if mapped else ".".join((name, *relative)))
    assert found == set(config["packages"])
