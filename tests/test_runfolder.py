"""A run folder reads and writes only inside itself: stored paths, moved folders, symlinks (issue 21)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hwnas.errors import UserError
from hwnas.runfolder import copy_tree_into, inside_folder, relative_to_folder


@pytest.fixture
def run(tmp_path: Path) -> Path:
    folder = tmp_path / "runs" / "run"
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "model.pt").write_bytes(b"weights")
    return folder


def test_a_stored_path_is_relative_and_resolves_inside_the_folder(run: Path) -> None:
    assert relative_to_folder(run, run / "model") == "model"
    assert inside_folder(run, "model", "f: folder") == (run / "model").resolve()
    with pytest.raises(ValueError):
        relative_to_folder(run, run.parent / "elsewhere")


@pytest.mark.parametrize("stored", ["/etc/passwd", "../../secret", "model/../../secret", "/"])
def test_a_stored_path_that_leaves_the_folder_is_one_line_naming_the_field(run: Path, stored: str) -> None:
    (run.parent.parent / "secret").write_text("x")
    with pytest.raises(UserError, match=r"stages/train\.json: folder: .* is not inside the run folder"):
        inside_folder(run, stored, "stages/train.json: folder")


def test_a_link_inside_the_folder_that_leads_out_is_refused(run: Path, tmp_path: Path) -> None:
    (tmp_path / "outside").mkdir()
    (run / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(UserError, match="not inside the run folder"):
        inside_folder(run, "link", "f: x")
    with pytest.raises(UserError, match="not inside the run folder"):
        inside_folder(run, "link/file", "f: x")


def test_an_old_records_path_finds_the_moved_folders_own_file_never_the_originals(run: Path, tmp_path: Path) -> None:
    moved = tmp_path / "moved"
    run.rename(moved)
    run.mkdir(parents=True)  # the original place has a folder of the same name again, with other weights
    (run / "model").mkdir()
    (run / "model" / "model.pt").write_bytes(b"the original's")
    for old in (str(run / "model"), "runs/run/model"):  # absolute, and relative to where the run was started
        found = inside_folder(moved, old, "stages/train.json: folder")
        assert found == (moved / "model").resolve() and (found / "model.pt").read_bytes() == b"weights"


def test_copying_into_the_folder_never_writes_through_a_link(run: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim.pt"
    victim.write_bytes(b"precious")
    source = run / "search" / "best"
    source.mkdir(parents=True)
    (source / "model.pt").write_bytes(b"retrained")
    (run / "model" / "model.pt").unlink()
    (run / "model" / "model.pt").symlink_to(victim)
    copy_tree_into(source, run / "model", run)
    assert victim.read_bytes() == b"precious"
    assert not (run / "model" / "model.pt").is_symlink() and (run / "model" / "model.pt").read_bytes() == b"retrained"
    (run / "model").rename(run / "model-old")
    (run / "model").symlink_to(tmp_path)  # the destination folder itself a link out of the run folder
    copy_tree_into(source, run / "model", run)
    assert not (run / "model").is_symlink() and not (tmp_path / "model.pt").exists()
    with pytest.raises(UserError, match="not inside the run folder"):
        copy_tree_into(tmp_path, run / "copy", run)


def test_the_markdown_report_escapes_what_a_record_holds(tmp_path: Path) -> None:
    import json
    import shutil

    from hwnas.pipeline.report import render_report

    folder = tmp_path / "run"
    shutil.copytree(Path(__file__).parent / "data" / "run-2026-12-02", folder)
    path = folder / "stages" / "train.json"
    record = json.loads(path.read_text())
    record["result"]["arch"] = "<img src=x onerror=alert(1)>|cell"
    path.write_text(json.dumps(record))
    markdown, html = render_report(folder)
    text, page = markdown.read_text(), html.read_text()
    assert "<img src=x" not in text and "&lt;img src=x onerror=alert(1)&gt;\\|cell" in text
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;|cell" in page


HOLD = (
    "import sys, time; from pathlib import Path; from hwnas.runfolder import exclusive\n"
    "with exclusive(Path(sys.argv[1]), 'run folder'):\n    print('held', flush=True); time.sleep(120)\n"
)


def test_a_second_process_on_a_held_folder_gets_one_line_naming_the_holder_and_the_lock_dies_with_it(tmp_path: Path) -> None:
    import subprocess
    import sys

    from hwnas.runfolder import exclusive

    folder = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        in_use = rf"run folder .* is in use by process {holder.pid}; wait for it"
        with pytest.raises(UserError, match=in_use), exclusive(folder, "run folder"):
            pass
        run = subprocess.run(
            [sys.executable, "-m", "hwnas", "run", "--quick", "--out", str(folder)], capture_output=True, text=True, timeout=120
        )
        assert run.returncode == 2 and run.stderr.strip().splitlines() == [
            f"error: run folder {folder} is in use by process {holder.pid}; wait for it to finish or stop it"
        ]
    finally:
        holder.kill()  # SIGKILL: the OS releases the lock with the process
        holder.wait()
    with exclusive(folder, "run folder"):
        assert (folder / ".lock").read_text().strip() == str(os.getpid())
