"""Which processes of a process group are still alive: the kill tests and ``benchmarks/kill_harness.py`` check with it
that workers die with the command they serve."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def group_members(pgid: int) -> list[int]:
    """Living processes of the process group (zombies, already dead and waiting to be reaped, are not)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()  # state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def wait_until(condition: Callable[[], object], timeout: float, poll: float = 0.05) -> bool:
    """True as soon as ``condition()`` is, polling every ``poll`` s; its value at ``timeout`` s otherwise."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(poll)
    return bool(condition())


def kill_when(command: list[str], condition: Callable[[], object], timeout: float, poll: float = 0.05) -> subprocess.Popen[str]:
    """Start ``command`` and SIGKILL it as soon as ``condition()`` holds (or it ended first); the ended process, its
    stderr still readable."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: condition() or process.poll() is not None, timeout, poll=poll)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    return process
