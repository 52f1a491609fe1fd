"""Nothing opens a network connection unless the user asked for one (a Ray address, ``--data fashion-mnist``).

Real CLI commands run end to end in a subprocess whose sockets are blocked at two levels:

- Python: a ``sitecustomize`` (first on ``PYTHONPATH``, so spawned workers load it too) replaces
  ``socket.socket.connect`` / ``connect_ex`` / ``sendto``, ``socket.create_connection`` and
  ``socket.getaddrinfo``; an Internet address or a name lookup is written to a log and refused;
- native code (ONNX Runtime's telemetry is C++, out of Python's reach): the command runs under
  ``strace -f``, which records every ``connect`` / ``sendto`` / ``sendmsg`` of the process tree; any to
  an ``AF_INET`` / ``AF_INET6`` address is an attempt. Skipped where strace or ptrace is unavailable.

Each level is first shown to catch a deliberate connection, so an empty log means something. The
commands run with ``ORT_DISABLE_TELEMETRY`` removed from the environment: hwnas itself must turn
ONNX Runtime's telemetry off.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from inputs import SMALL_ARCH, write_idx_folder

REPO = Path(__file__).resolve().parents[1]
SHIPPED_TABLE = REPO / "latency_tables" / "data" / "default-host-cpu-onnxruntime.json"

BLOCKER = textwrap.dedent(
    """
    import os
    import socket

    LOG = os.environ["HWNAS_TEST_NETWORK_LOG"]
    INTERNET = (socket.AF_INET, socket.AF_INET6)
    LOCAL_NAMES = (None, "", "localhost", "127.0.0.1", "::1")

    def _attempt(what, detail):
        with open(LOG, "a") as log:
            log.write(f"attempt {os.getpid()} {what} {detail!r}\\n")
        raise OSError(f"network blocked by the test: {what} {detail!r}")

    _connect, _connect_ex, _sendto = socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto
    _getaddrinfo = socket.getaddrinfo

    def connect(self, address):
        if self.family in INTERNET:
            _attempt("connect", address)
        return _connect(self, address)

    def connect_ex(self, address):
        if self.family in INTERNET:
            _attempt("connect_ex", address)
        return _connect_ex(self, address)

    def sendto(self, data, *args):
        if self.family in INTERNET:
            _attempt("sendto", args[-1])
        return _sendto(self, data, *args)

    def create_connection(address, *args, **kwargs):
        _attempt("create_connection", address)

    def getaddrinfo(host, *args, **kwargs):
        if host not in LOCAL_NAMES:
            _attempt("getaddrinfo", host)
        return _getaddrinfo(host, *args, **kwargs)

    socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto = connect, connect_ex, sendto
    socket.create_connection, socket.getaddrinfo = create_connection, getaddrinfo
    with open(LOG, "a") as log:
        log.write(f"loaded {os.getpid()}\\n")
    """
)
TRACED = re.compile(r"\b(connect|sendto|sendmsg)\(.*sa_family=AF_INET6?\b")


class Sandbox:
    """Runs commands with the Python blocker (and strace, when ``native``), and reads what they tried."""

    def __init__(self, folder: Path, native: bool) -> None:
        self.folder = folder
        (folder / "site").mkdir(parents=True)
        (folder / "site" / "sitecustomize.py").write_text(BLOCKER)
        self.log = folder / "attempts.log"
        self.trace = folder / "strace.log"
        self.native = native

    def env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if key != "ORT_DISABLE_TELEMETRY"}
        return env | {
            "PYTHONPATH": os.pathsep.join([str(self.folder / "site"), *filter(None, [os.environ.get("PYTHONPATH")])]),
            "HWNAS_TEST_NETWORK_LOG": str(self.log),
            "XDG_CACHE_HOME": str(self.folder / "cache"),  # conversions are made here, not found in a warm cache
        }

    def run(self, argv: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
        self.log.unlink(missing_ok=True)
        self.trace.unlink(missing_ok=True)
        prefix = []
        if self.native:
            prefix = ["strace", "-f", "-qq", "--seccomp-bpf", "-e", "trace=connect,sendto,sendmsg", "-e", "signal=none"]
            prefix += ["-o", str(self.trace)]
        return subprocess.run(
            [*prefix, *argv], capture_output=True, text=True, env=self.env(), cwd=self.folder, timeout=timeout, check=False
        )

    def python_attempts(self) -> list[str]:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        assert any(line.startswith("loaded ") for line in lines), "the blocker was not loaded: the check would be empty"
        return [line for line in lines if line.startswith("attempt ")]

    def native_attempts(self) -> list[str]:
        if not self.native:
            return []
        return [line for line in self.trace.read_text().splitlines() if TRACED.search(line)]


def strace_works() -> bool:
    if shutil.which("strace") is None:
        return False
    probe = subprocess.run(["strace", "-f", "-qq", "-o", os.devnull, "true"], capture_output=True, timeout=30, check=False)
    return probe.returncode == 0


@pytest.fixture(scope="module")
def native() -> bool:
    return strace_works()


@pytest.fixture()
def sandbox(tmp_path: Path, native: bool) -> Sandbox:
    return Sandbox(tmp_path / "sandbox", native)


# ---- the checks catch a connection ---------------------------------------------------------------------------
CONNECT = "import socket; socket.create_connection(('192.0.2.1', 80), timeout=1)"  # TEST-NET-1: routed nowhere
RESOLVE = "import socket; socket.getaddrinfo('example.com', 443)"
RAW = "import _socket; s = _socket.socket(); s.settimeout(0.3); s.connect_ex(('192.0.2.1', 80))"  # under the Python hook


@pytest.mark.parametrize(("code", "what"), [(CONNECT, "create_connection"), (RESOLVE, "getaddrinfo")])
def test_the_blocker_refuses_and_records_a_connection(tmp_path: Path, code: str, what: str) -> None:
    box = Sandbox(tmp_path, native=False)
    done = box.run([sys.executable, "-c", code], timeout=60)
    assert done.returncode != 0 and "network blocked by the test" in done.stderr
    attempts = box.python_attempts()
    assert len(attempts) == 1 and f" {what} " in attempts[0], attempts


def test_strace_sees_a_connection_made_below_python(tmp_path: Path, native: bool) -> None:
    if not native:
        pytest.skip("strace is not installed or ptrace is not permitted here")
    box = Sandbox(tmp_path, native=True)
    done = box.run([sys.executable, "-c", RAW], timeout=60)
    assert done.returncode == 0, done.stderr
    assert box.python_attempts() == []  # the Python hook cannot see it ...
    found = box.native_attempts()
    assert len(found) == 1 and "192.0.2.1" in found[0], found  # ... strace does


def test_importing_hwnas_turns_onnxruntime_telemetry_off(tmp_path: Path) -> None:
    code = "import os, sys; import hwnas; assert 'onnxruntime' not in sys.modules; print(os.environ.get('ORT_DISABLE_TELEMETRY'))"
    env = {key: value for key, value in os.environ.items() if key != "ORT_DISABLE_TELEMETRY"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "1", done.stderr
    opted_in = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env | {"ORT_DISABLE_TELEMETRY": "0"}, timeout=120
    )
    assert opted_in.stdout.strip() == "0"  # a user who asks for telemetry is not overruled


# ---- real commands open nothing ------------------------------------------------------------------------------
def hwnas(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "hwnas", *map(str, args)]


def command(name: str, root: Path) -> list[str]:
    if name == "lut show":
        return hwnas("lut", "show", SHIPPED_TABLE, "--json")
    if name == "predictor fit":
        return hwnas("predictor", "fit", "--table", SHIPPED_TABLE, "--out", root / "p.skops", "--no-drift", "--json")
    if name == "export onnx+tflite":
        return hwnas("export", SMALL_ARCH, "--format", "onnx,tflite", "--images", "64", "--out", root / "export", "--json")
    data = write_idx_folder(root / "data", 300, 100)
    args = ["--arch", SMALL_ARCH, "--data", data, "--epochs", "1", "--threads", "1", "--out", root / "train", "--json"]
    return hwnas("train", *args)


COMMANDS = ("lut show", "predictor fit", "export onnx+tflite", "train")


@pytest.mark.slow
@pytest.mark.parametrize("name", COMMANDS)
def test_a_real_command_opens_no_connection(sandbox: Sandbox, name: str) -> None:
    done = sandbox.run(command(name, sandbox.folder))
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)  # it did its work (a JSON result)
    assert sandbox.python_attempts() == []
    assert sandbox.native_attempts() == []
    if name == "export onnx+tflite":  # both files verified against PyTorch, and timed on this machine's runtimes
        exports = json.loads(done.stdout)["exports"]
        assert sorted(item["format"] for item in exports) == ["onnx", "tflite"]
        assert all(item["verification"]["passed"] for item in exports), exports
