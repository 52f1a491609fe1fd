"""Re-make the shipped supernet ``hwnas/supernets/default/`` (run once; its output is committed).

The command it runs is the one the README gives users::

    hwnas supernet train --space default --data embedded --epochs 12 --seed 0 --out build/supernet-default-e12

``build/supernet-default-e12`` keeps the per-epoch checkpoint, so a killed build resumes; the two files
a user needs (``supernet.pt``, the weights as a plain state dict, and ``supernet.json``, its
versioned description with the training curve and wall time) are then copied next to this script.
Run it on an otherwise idle machine: its wall time is recorded in ``supernet.json``.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from hwnas.cli import main as hwnas_main
from hwnas.supernets import DEFAULT_SUPERNET

EPOCHS = 12  # 3 until 2026-12-04: its subnetworks, fine-tuned an epoch, stayed 3-6 points under scratch training
BUILD = Path(f"build/supernet-default-e{EPOCHS}")  # per epoch count: a checkpoint of other epochs is not resumed
COMMAND = ["supernet", "train", "--space", "default", "--data", "embedded", "--epochs", str(EPOCHS), "--seed", "0"]


def main() -> None:
    """Train (or resume) in ``build/``, then copy the weights and their description into the package."""
    sys.argv = ["hwnas", *COMMAND, "--out", str(BUILD)]  # the user's command, run in this process
    try:
        hwnas_main()
    except SystemExit as stop:
        if stop.code not in (0, None):
            raise
    DEFAULT_SUPERNET.mkdir(exist_ok=True)
    for name in ("supernet.pt", "supernet.json"):
        shutil.copy2(BUILD / name, DEFAULT_SUPERNET / name)
    print(f"shipped supernet written to {DEFAULT_SUPERNET}")


if __name__ == "__main__":
    main()
