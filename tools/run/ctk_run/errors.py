"""Docker's exit codes for ``run`` and ``exec``: 125 when ctk-run itself failed, 126 when the command cannot
be invoked, 127 when it is not found; otherwise the container's own status."""
from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ctk_shared.errors import CtkError, ExitStatus

CTK_FAILED = ExitStatus.RUN_FAILED
CANNOT_INVOKE = ExitStatus.CANNOT_INVOKE
NOT_FOUND = ExitStatus.COMMAND_NOT_FOUND


class RunError(CtkError):
    """A failure of ``run``/``exec`` carrying Docker's exit code for it."""

    def __init__(self, message: str, *, hint: str | None = None, exit_code: int = CTK_FAILED) -> None:
        super().__init__(message, hint=hint)
        self.exit_code = exit_code


def exec_error(e: CtkError) -> RunError:
    """Classify runc's failure to start a process the way Docker does."""
    msg = str(e)
    from ctk_shared.nethooks import hook_error

    from_hook = hook_error(msg)
    if from_hook:  # ctk-net could not attach the container (port taken, unknown network …)
        return RunError(from_hook, hint=e.hint, exit_code=CTK_FAILED)
    low = msg.lower()
    if "executable file not found" in low or "no such file or directory" in low:
        return RunError(msg, hint="check the command and the image's PATH", exit_code=NOT_FOUND)
    if "permission denied" in low:
        return RunError(msg, exit_code=CANNOT_INVOKE)
    return RunError(msg, hint=e.hint, exit_code=CTK_FAILED)


def as_run_error(e: CtkError) -> RunError:
    return e if isinstance(e, RunError) else RunError(e.message, hint=e.hint, exit_code=CTK_FAILED)


def no_space(e: OSError, where: str) -> RunError | None:
    """A full disk met while creating, running or exec'ing: one line naming the file (else ``where``, the data
    root), exit 125; None for any other OSError (left to the last-resort handler)."""
    if e.errno != errno.ENOSPC:
        return None
    return RunError(f"no space left on device: {e.filename or where}",
                    hint=f"free space on the filesystem holding {where} (ctk-run rm, ctk-pull prune) and retry")


@contextmanager
def run_errors(data_root: Callable[[], str]) -> Iterator[None]:
    """``run``/``create``/``exec``: every ctk failure exits 125 (Docker's code), a full disk included.
    ``data_root`` is asked for only on a full disk: reading the options may itself fail, with 125 too."""
    try:
        yield
    except CtkError as e:
        raise as_run_error(e) from e
    except OSError as e:
        if (err := no_space(e, data_root())) is None:
            raise
        raise err from e
