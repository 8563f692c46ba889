"""The one error type flytomo reports to a user: a file (or key) and what is wrong with it."""
from __future__ import annotations

import errno
from pathlib import Path

#: OSError numbers of a full disk, a quota, a file-size limit: the output's place, not the input
NO_ROOM_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class FlytomoError(Exception):
    """Bad input a user can fix. The CLI prints ``str(err)`` on one line and exits 2.

    Parameters
    ----------
    where : the file, dataset or config key at fault (``None`` when there is none).
    problem : what is wrong, in words a beamline user understands.
    """

    def __init__(self, where: str | Path | None, problem: str) -> None:
        self.where = None if where is None else str(where)
        self.problem = " ".join(str(problem).split())
        super().__init__(f"{self.where}: {self.problem}" if self.where else self.problem)
