"""Hostile shared files: a zip bomb of every archive kind hwnas opens costs no memory, and every loader is listed.

hwnas opens two kinds of zip archive that people share: torch ``.pt`` files (run folders, pruned
models, training checkpoints, the accuracy predictor, the pruning agent in its store) and skops
predictors. Both loaders inflate whatever an entry holds, so a 300 KB file can claim gigabytes.
Each test here builds a real archive of its kind (``torch.save``, ``save_predictor``), re-packs it
so that it inflates ~1000x, and checks the loader refuses it in one line before inflating anything.

The other hostile kinds have their tests beside the code they attack: pickle payloads
(``test_predictors.py``, ``test_trainer.py``), YAML Python tags and alias bombs, 20 MB+ files and
``../`` names (``test_bad_inputs.py``), executables named by a device spec (``test_android_adb.py``).
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hwnas.errors import UserError
from hwnas.fileio import check_archive, file_sha256

from inputs import SMALL_ARCH, deflated_copy, torch_zip_bomb

REPO = Path(__file__).resolve().parents[1]
SHIPPED_TABLE = REPO / "latency_tables" / "data" / "default-host-cpu-onnxruntime.json"
BOMB_MB = 256


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return torch_zip_bomb(tmp_path_factory.mktemp("bomb") / "model.pt", BOMB_MB)


def test_the_bomb_is_real_torch_inflates_it_whole(bomb: Path) -> None:
    """Without the check, ``torch.load`` (even ``weights_only=True``) turns the small file into 256 MB of memory."""
    import torch

    assert bomb.stat().st_size < BOMB_MB * (1 << 20) / 200
    state = torch.load(bomb, weights_only=True)
    assert state["weight"].numel() * 4 == BOMB_MB * (1 << 20)


def test_a_torch_bomb_is_refused_as_a_checkpoint_before_anything_is_inflated(bomb: Path) -> None:
    from hwnas.export_model import read_state_dict

    with pytest.raises(UserError, match=r"would unpack to 268 MB from 0\.\d MB .*zip bomb"):
        read_state_dict(bomb)


def test_a_torch_bomb_is_refused_as_a_training_checkpoint(bomb: Path, tmp_path: Path) -> None:
    from hwnas.trainer import load_checkpoint

    with pytest.raises(UserError, match="zip bomb"):
        load_checkpoint(bomb, None, {}, 1)  # type: ignore[arg-type]


def test_a_torch_bomb_is_refused_as_the_accuracy_predictor(bomb: Path) -> None:
    from hwnas.predictors.accuracy import AccuracyPredictor

    with pytest.raises(UserError, match="zip bomb"):
        AccuracyPredictor.read_model(bomb, {})


def test_a_bomb_in_the_pruning_store_is_refused_as_the_agent(bomb: Path) -> None:
    from hwnas.pruning.ddpg import DDPG

    with pytest.raises(UserError, match=r"stored agent bytes .*zip bomb"):
        DDPG.__new__(DDPG).load_bytes(bomb.read_bytes())


def test_a_skops_predictor_whose_schema_inflates_to_256_mb_is_refused_even_with_a_forged_sidecar(tmp_path: Path) -> None:
    """The sidecar's hash is the attacker's to forge; the archive check does not rest on it."""
    from hwnas.latency_tables.table import LatencyTable
    from hwnas.predictors import LutSum, load_predictor, networks_from_table, save_predictor
    from hwnas.presets import get_space

    table = LatencyTable.load(SHIPPED_TABLE)
    networks = networks_from_table(table.networks[:5], get_space("default"))
    model, sidecar = save_predictor(LutSum(table).fit([n.arch for n in networks], [n.ms for n in networks]), tmp_path / "p.skops")
    check_archive(model, "predictor")  # the real file passes
    bomb = deflated_copy(model, tmp_path / "bomb.skops", grow={"schema.json": BOMB_MB << 20})
    shutil.move(bomb, model)
    forged = json.loads(sidecar.read_text()) | {"model_sha256": file_sha256(model)}
    sidecar.write_text(json.dumps(forged))
    with pytest.raises(UserError, match="zip bomb"):
        load_predictor(model)


def test_real_model_files_pass_the_check(tmp_path: Path) -> None:
    """torch.save and skops write stored entries: the unpacked size is the file's size, far from any limit."""
    import torch
    import torchvision

    path = tmp_path / "mobilenet_v2.pt"
    torch.save(torchvision.models.mobilenet_v2(weights=None).state_dict(), path)
    check_archive(path, "checkpoint")
    check_archive(path.read_bytes(), "checkpoint")


@pytest.mark.parametrize("content", [b"", b"not a zip", b"PK\x03\x04truncated"])
def test_what_is_no_zip_is_left_to_the_loader_to_name(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    check_archive(path, "checkpoint")
    check_archive(content, "checkpoint")


def test_an_archive_over_the_absolute_limit_is_refused_whatever_its_ratio(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "big.pt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data/0", b"\0" * 4096)
    with pytest.raises(UserError, match=r"would unpack to 0\.0 GB, more than the 0\.0 GB"):
        check_archive(path, "checkpoint", max_bytes=1024)


def child_peak_rss_mb(command: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``command`` in a fresh interpreter that reports its own peak RSS as its last line.

    The peak is ``VmHWM`` of ``/proc/self/status``, which starts anew with the process image; ``ru_maxrss``
    does not: Linux carries it over ``exec`` from the forked parent (here, pytest's own 800 MB).
    """
    script = (
        "import runpy, sys\n"
        f"sys.argv = {command!r}\n"
        "try:\n"
        "    runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n"
        "finally:\n"
        "    peak = [line for line in open('/proc/self/status') if line.startswith('VmHWM:')][0]\n"
        "    print(peak.split()[1], file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=300)
    return result, int(result.stderr.strip().splitlines()[-1]) / 1024


@pytest.mark.slow
def test_hwnas_export_of_a_run_folder_holding_a_bomb_is_one_line_and_costs_no_memory(bomb: Path, tmp_path: Path) -> None:
    """The same command on the same folder with a 0-byte model.pt is the baseline: the bomb adds nothing to it."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "result.json").write_text(json.dumps({"arch": SMALL_ARCH}))
    (run / "model.pt").write_bytes(b"")
    command = ["hwnas", "export", str(run), "--format", "onnx", "--out", str(tmp_path / "out")]
    empty, baseline_mb = child_peak_rss_mb(command, tmp_path)
    assert "is empty" in empty.stderr
    shutil.copy(bomb, run / "model.pt")
    refused, bomb_mb = child_peak_rss_mb(command, tmp_path)
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and len(lines) == 2, refused.stderr  # the error line, then the helper's figure
    assert lines[0].startswith("error: ") and "zip bomb" in lines[0], refused.stderr
    assert bomb_mb < baseline_mb + 32, (bomb_mb, baseline_mb)  # inflated, it would be +256 MB at least
    assert not (tmp_path / "out").exists()


# ---- the list of loaders --------------------------------------------------------------------------
# Every call that parses a file (or stored bytes) in the package, by module. A new one must be added here
# after checking it goes through hwnas.fileio (size cap, UTF-8, strict JSON/TOML/YAML), check_archive
# (zip archives) or a schema-checked store; README "Security" lists what each kind of file is read with.
RAW_LOADERS = {"torch.load", "skops.io.load", "sqlite3.connect", "np.load", "yaml.load", "tomllib.loads", "json.loads"}
KNOWN_LOADERS = {
    ("hwnas/export_model.py", "torch.load"): "run folders and pruned models (read_state_dict: check_archive first)",
    ("hwnas/trainer.py", "torch.load"): "training checkpoints (check_archive first)",
    ("hwnas/trainer.py", "json.loads"): "a checkpoint's own fingerprint string",
    ("predictors/accuracy.py", "torch.load"): "the accuracy predictor (check_archive first)",
    ("hwnas/pruning/ddpg.py", "torch.load"): "the pruning agent in its store (check_archive first)",
    ("predictors/latency.py", "skops.io.load"): "latency predictors (check_archive and a type trust list first)",
    ("predictors/latency.py", "json.loads"): "the table and space inside a latency predictor (the table's version checked)",
    ("latency_tables/store.py", "sqlite3.connect"): "profile stores (schema version in meta)",
    ("latency_tables/store.py", "json.loads"): "values of a profile store",
    ("hwnas/pruning/store.py", "sqlite3.connect"): "pruning stores (schema version in meta)",
    ("hwnas/pruning/store.py", "json.loads"): "values of a pruning store",
    ("hwnas/data.py", "np.load"): "the embedded images (allow_pickle=False)",
    ("hwnas/fileio.py", "json.loads"): "every JSON file (read_json)",
    ("hwnas/supernet/store.py", "json.loads"): "a round trip of the description it is about to write (reads no file)",
    ("hwnas/fileio.py", "tomllib.loads"): "every TOML file (read_toml)",
    ("hwnas/fileio.py", "yaml.load"): "every YAML file (read_yaml, a SafeLoader subclass)",
}


def loader_calls() -> set[tuple[str, str]]:
    found = set()
    for folder in ("hwnas", "devices", "latency_tables", "predictors", "exporters"):
        for path in sorted((REPO / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and (name := ast.unparse(node.func)) in RAW_LOADERS:
                    found.add((str(path.relative_to(REPO)), name))
    return found


def test_every_loader_in_the_package_is_a_listed_one() -> None:
    assert loader_calls() - set(KNOWN_LOADERS) == set(), "a new loader: check what it reads and list it"


def test_the_loader_list_names_no_loader_that_is_gone() -> None:
    assert set(KNOWN_LOADERS) - loader_calls() == set()


def test_the_peak_rss_helper_measures_what_a_process_holds(tmp_path: Path) -> None:
    """The helper can see 300 MB being held, so the bomb test's "no more than the baseline" means something."""
    (tmp_path / "hold.py").write_text("block = bytearray(300 * 1024 * 1024)\nblock[::4096] = b'x' * len(block[::4096])\n")
    _, holding = child_peak_rss_mb(["hold"], tmp_path)
    (tmp_path / "idle.py").write_text("pass\n")
    _, idle = child_peak_rss_mb(["idle"], tmp_path)
    assert holding > idle + 250 and idle < 100
