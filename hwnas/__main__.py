"""``python -m hwnas`` is the ``hwnas`` command."""

from hwnas.cli import main

main()
