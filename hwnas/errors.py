"""One exception type for user mistakes.

Everything a user can get wrong (a malformed architecture string, an unknown recipe field, a
missing data folder) raises :class:`UserError`. The CLI turns it into one line on stderr and exit
code 2; anything else is a bug and keeps its traceback.
"""


class UserError(ValueError):
    """A mistake in what the user gave us, explained in one line."""


class ArchError(UserError):
    """An architecture string or value that does not parse or does not fit its search space."""


class BudgetUnreachable(UserError):
    """A pruning budget below what pruning can reach (every layer at its fewest channels is still over it).

    A caller that can go on without pruning (``hwnas run``) catches this type; nothing matches message text.
    """


class OutOfResources(UserError):
    """The disk is full, a file-size limit is reached, or memory ran out: said in one line, with what to do.

    Nothing hwnas stores is lost when this happens (every file is written to a temporary name and renamed; stores
    commit row by row), so the line says to free space and run the same command again.
    """
