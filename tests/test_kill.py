"""Nothing lost on a kill: ``hwnas train`` resumes after SIGKILL, and worker processes die with their parent.

Every test here starts real processes and kills them with SIGKILL; the process tree is read from
``/proc`` (Linux).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hwnas.recipe import Recipe

from inputs import SMALL_ARCH, write_idx_folder
from processes import group_members, kill_when, wait_until

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc")


# ---- the process tree, from /proc ---------------------------------------------------------------
def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of ``pid``, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    found = _stat(pid)
    return found is not None and found[0] not in ("Z", "X")


def spawned_workers(parent: int) -> list[int]:
    """Living children of ``parent`` started by multiprocessing's spawn (pool workers)."""
    workers = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        found = _stat(int(entry.name))
        if found is None or found[1] != parent or not alive(int(entry.name)):
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "spawn_main" in command:
            workers.append(int(entry.name))
    return workers


def start_script(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )


def read_line_starting(process: subprocess.Popen[str], prefix: str) -> str:
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(prefix):
            return line.strip()
    process.wait(timeout=30)
    pytest.fail(f"the script ended (exit {process.returncode}) before printing {prefix!r}: {process.stderr.read()[-2000:]}")


def kill_and_check_workers_go(process: subprocess.Popen[str], workers: list[int], within_s: float = 5.0) -> float:
    """SIGKILL ``process``; the seconds until every one of ``workers`` is gone (fails if any outlives ``within_s``)."""
    assert workers and all(alive(pid) for pid in workers)
    killed = time.monotonic()
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    gone = wait_until(lambda: not any(alive(pid) for pid in workers), within_s)
    left = [pid for pid in workers if alive(pid)]
    for pid in left:  # never leave them behind for the next test
        os.kill(pid, signal.SIGKILL)
    assert gone, f"workers {left} outlived their parent by {within_s} s"
    return time.monotonic() - killed


# ---- workers die with their parent --------------------------------------------------------------
CONVERT_SCRIPT = """
    import sys
    from pathlib import Path
    from hwnas.latency_tables.convert import convert_all, network_job
    from hwnas.presets import get_space

    space = get_space("default")
    jobs = [network_job(space, space.sample(seed), "onnx", Path(sys.argv[1])) for seed in range(40)]
    convert_all(jobs, 2, on_done=lambda job: print("converted", job.path, flush=True))
"""


@pytest.mark.slow
def test_conversion_workers_die_with_their_parent(tmp_path: Path) -> None:
    process = start_script(CONVERT_SCRIPT, str(tmp_path / "cache"))
    try:
        read_line_starting(process, "converted")  # both workers have started and are converting
        assert wait_until(lambda: len(spawned_workers(process.pid)) == 2, 30)
        workers = spawned_workers(process.pid)
        seconds = kill_and_check_workers_go(process, workers)
    finally:
        if process.poll() is None:
            process.kill()
    assert seconds < 5


EXECUTOR_SCRIPT = """
    import json, sys
    from hwnas.presets import get_space
    from hwnas.recipe import Recipe
    from hwnas.search.executors import LocalExecutor

    space = get_space("default")
    job = {"space": space.to_json(), "arch": sys.argv[1], "recipe": Recipe(epochs=1, batch_size=64).to_json(),
           "train_images": 128, "val_images": 64, "seed": 0}
    executor = LocalExecutor(1)
    handle = executor.submit(job)
    [(_, result)] = executor.wait_any([handle])
    print("worker", result["worker_pid"], result["state"], flush=True)
    long = job | {"recipe": Recipe(epochs=50, batch_size=64).to_json(), "train_images": 9000}
    executor.wait_any([executor.submit(long)])
"""


@pytest.mark.slow
def test_search_workers_die_with_their_parent() -> None:
    process = start_script(EXECUTOR_SCRIPT, SMALL_ARCH)
    try:
        _, pid, state = read_line_starting(process, "worker").split()
        assert state == "complete"
        assert spawned_workers(process.pid) == [int(pid)]
        time.sleep(1.0)  # the worker is training the long candidate now
        seconds = kill_and_check_workers_go(process, [int(pid)])
    finally:
        if process.poll() is None:
            process.kill()
    assert seconds < 5


# ---- a hung worker is stopped --------------------------------------------------------------------
def test_a_conversion_over_its_time_limit_fails_clearly_and_stops_the_workers(tmp_path: Path) -> None:
    from hwnas.latency_tables.convert import WorkerTimeout, convert_all, network_job
    from hwnas.presets import get_space

    space = get_space("default")
    jobs = [network_job(space, space.sample(seed), "onnx", tmp_path) for seed in range(4)]
    started = time.monotonic()
    # a worker needs seconds to start (torch alone) before converting: 0.3 s is always over the limit
    with pytest.raises(WorkerTimeout, match=r"converting network default:\S+ to onnx took longer than 0.3 s") as caught:
        convert_all(jobs, 2, timeout_s=0.3)
    assert "HWNAS_CONVERT_TIMEOUT_S" in str(caught.value) and "its worker was stopped" in str(caught.value)
    assert time.monotonic() - started < 10  # not the seconds the conversions would have taken
    assert wait_until(lambda: spawned_workers(os.getpid()) == [], 5)
    assert not any(job.path.exists() for job in jobs)


def test_limit_from_env_reads_seconds_and_refuses_nonsense(monkeypatch) -> None:
    from hwnas.errors import UserError
    from hwnas.latency_tables.convert import limit_from_env

    monkeypatch.delenv("HWNAS_TEST_LIMIT", raising=False)
    assert limit_from_env("HWNAS_TEST_LIMIT", 60.0) == 60.0
    monkeypatch.setenv("HWNAS_TEST_LIMIT", "2.5")
    assert limit_from_env("HWNAS_TEST_LIMIT", 60.0) == 2.5
    monkeypatch.setenv("HWNAS_TEST_LIMIT", "0")
    assert limit_from_env("HWNAS_TEST_LIMIT", 60.0) is None
    for bad in ("soon", "nan"):
        monkeypatch.setenv("HWNAS_TEST_LIMIT", bad)
        with pytest.raises(UserError, match="HWNAS_TEST_LIMIT"):
            limit_from_env("HWNAS_TEST_LIMIT", 60.0)


@pytest.mark.slow
def test_a_candidate_over_its_time_limit_is_a_failed_trial_and_the_pool_goes_on() -> None:
    from hwnas.presets import get_space
    from hwnas.search.executors import LocalExecutor

    space = get_space("default")
    job = {
        "space": space.to_json(),
        "arch": SMALL_ARCH,
        "recipe": Recipe(epochs=1, batch_size=64).to_json(),
        "train_images": 128,
        "val_images": 64,
        "seed": 0,
    }
    executor = LocalExecutor(1, timeout_s=0.5)
    try:
        stuck = executor.submit(job)
        first_pool = executor.pool
        results: list = []
        while not results:
            results = executor.wait_any([stuck])
        [(handle, result)] = results
        assert handle is stuck and result["state"] == "failed"
        assert "longer than the 0.5 s limit (HWNAS_CANDIDATE_TIMEOUT_S); its worker was stopped" in result["error"]
        assert executor.pool is not first_pool and wait_until(lambda: spawned_workers(os.getpid()) == [], 5)
        executor.timeout_s = None  # the fresh pool trains the next candidate
        fine = executor.submit(job)
        [(handle, result)] = executor.wait_any([fine])
        assert handle is fine and result["state"] == "complete", result
    finally:
        executor.close()
    assert wait_until(lambda: spawned_workers(os.getpid()) == [], 10)


# ---- hwnas train keeps every epoch ---------------------------------------------------------------
def train_command(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "hwnas", "train", "--arch", SMALL_ARCH, "--data", str(data), "--epochs", "3",
        "--set", "batch_size=64", "--set", "lr=0.05", "--threads", "1", "--seed", "3", "--out", str(out), "--json", *extra,
    ]  # fmt: skip


def read_checkpoint(out: Path) -> dict:
    import torch

    return torch.load(out / "checkpoint.pt", weights_only=True)


@pytest.mark.slow
def test_train_killed_after_an_epoch_resumes_from_the_next_and_ends_as_an_uninterrupted_run(tmp_path: Path) -> None:
    import torch

    data = write_idx_folder(tmp_path / "data", train=1200, test=100)
    out = tmp_path / "out"
    process = kill_when(train_command(data, out), lambda: (out / "checkpoint.pt").exists(), 300, poll=0.02)
    assert process.returncode == -signal.SIGKILL, process.stderr.read() if process.stderr else ""
    assert not (out / "result.json").exists()
    kept = read_checkpoint(out)
    assert kept["epoch"] == 1 and [p["epoch"] for p in kept["curve"]] == [1]

    resumed = subprocess.run(train_command(data, out), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "1 epoch(s) done, from epoch 2 of 3" in resumed.stderr
    result = json.loads(resumed.stdout)
    assert [p["epoch"] for p in result["curve"]] == [1, 2, 3]
    assert result["curve"][0] == kept["curve"][0]  # epoch 1 was not redone: its wall time is the killed run's

    uninterrupted = tmp_path / "uninterrupted"
    whole = subprocess.run(train_command(data, uninterrupted), capture_output=True, text=True, timeout=600)
    assert whole.returncode == 0, whole.stderr
    assert "resuming" not in whole.stderr
    expected = json.loads(whole.stdout)
    drop = lambda curve: [{k: v for k, v in p.items() if k != "seconds"} for p in curve]  # noqa: E731
    assert drop(result["curve"]) == drop(expected["curve"])
    weights = torch.load(out / "model.pt", weights_only=True)
    reference = torch.load(uninterrupted / "model.pt", weights_only=True)
    assert weights.keys() == reference.keys() and all(torch.equal(weights[k], reference[k]) for k in weights)

    # a checkpoint of other training is refused in one line; --fresh starts over
    other = subprocess.run(train_command(data, out, "--set", "lr=0.1"), capture_output=True, text=True, timeout=600)
    assert other.returncode == 2 and "Traceback" not in other.stderr
    lines = other.stderr.strip().splitlines()
    assert len(lines) == 1 and "is from other training (recipe.lr 0.05 (now 0.1))" in lines[0] and "--fresh" in lines[0]
    fresh = subprocess.run(train_command(data, out, "--set", "lr=0.1", "--fresh"), capture_output=True, text=True, timeout=600)
    assert fresh.returncode == 0 and "resuming" not in fresh.stderr, fresh.stderr
    assert json.loads(fresh.stdout)["recipe"]["lr"] == 0.1 and read_checkpoint(out)["epoch"] == 3


# ---- Ctrl-C --------------------------------------------------------------------------------------
def profile_command(out: Path, cache: Path) -> list[str]:
    return [
        sys.executable, "-m", "hwnas", "profile", "host-ort", "--space", "default", "--no-space-layers", "--layers", "5",
        "--networks", "2", "--workers", "2", "--cache", str(cache), "--out", str(out), "--json", "--no-reuse",
    ]  # fmt: skip


def answer_ctrl_c() -> None:
    """In the child, before exec: SIGINT back to its default. A command started in the background by a non-interactive
    shell (CI started with ``&``, ``nohup``) inherits SIGINT ignored, and Python keeps it ignored: the profile then ran
    to the end with exit 0, as it should for a user who ignores Ctrl-C, and the test could not test anything."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def converted(cache: Path) -> dict[Path, int]:
    """The converted model files in ``cache`` and their modification times (ns)."""
    return {path: path.stat().st_mtime_ns for path in cache.rglob("*.onnx")} if cache.exists() else {}


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_mid_conversion_stops_profile_and_its_workers_says_how_to_resume_and_keeps_every_file(
    tmp_path: Path, signum: int, code: int
) -> None:
    """SIGINT to the whole process group, as a terminal's Ctrl-C sends it, while two conversion workers run; SIGTERM
    (a ``kill`` of the group, a job scheduler's stop) behaves the same."""
    out, cache = tmp_path / "profile", tmp_path / "cache"
    process = subprocess.Popen(
        profile_command(out, cache),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=answer_ctrl_c,
    )
    try:
        assert wait_until(lambda: len(converted(cache)) >= 2 or process.poll() is not None, 300, poll=0.05)
        assert process.poll() is None, "the profile ended before Ctrl-C"
        assert len(spawned_workers(process.pid)) == 2
        os.killpg(process.pid, signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr and "run the same command again" in stderr.strip().splitlines()[-1], stderr
    assert wait_until(lambda: group_members(process.pid) == [], 15), "a worker outlived the signal"
    kept = converted(cache)
    resumed = subprocess.run(profile_command(out, cache), capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = converted(cache)
    assert len(after) > len(kept) and all(after[path] == mtime for path, mtime in kept.items())  # none made again
