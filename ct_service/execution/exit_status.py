"""How the project's command ended (its exit status, or the signal that killed
it), learnt without MLflow internals: MLflow's public API only says "failed".

MLflow's local backend runs the entry point with `bash -c` (after a
`source <env>/activate &&` for virtualenv/uv/conda, or as `docker run ...` for a
docker_env project), in an environment copied from ours. bash sources $BASH_ENV
before it runs a `-c` command: our file appends "start" to a status file, and an
EXIT trap appends "exit <status>". An EXIT trap also stops bash from exec'ing a
lone command, so a command killed by signal n ends the shell with 128+n, as
`docker run` reports a killed container.

The file unsets BASH_ENV and the status path at once, so shells the training code
starts neither see nor record anything; a BASH_ENV that was set already is chained.
"""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

# Signals that mean "stopped from outside", not "the training code crashed".
OUTSIDE_SIGNALS = {signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}

_HOOK = r"""# ct-service: record how this shell's command ends (exit_status.py)
__ct_status_file=$CT_EXIT_STATUS_FILE
unset CT_EXIT_STATUS_FILE
if [ -n "${CT_PREVIOUS_BASH_ENV-}" ]; then
    export BASH_ENV=$CT_PREVIOUS_BASH_ENV
    unset CT_PREVIOUS_BASH_ENV
    . "$BASH_ENV"
else
    unset BASH_ENV
fi
__ct_command=${BASH_EXECUTION_STRING:0:300}
__ct_command=${__ct_command//$'\n'/ }
printf 'start\t-\t%s\n' "$__ct_command" >> "$__ct_status_file"
__ct_record() {
    local status=$?
    printf 'exit\t%s\t%s\n' "$status" "$__ct_command" >> "$__ct_status_file"
}
trap __ct_record EXIT
"""


class Recorder:
    def __init__(self, folder: Path | None = None):
        self.folder = folder or Path(tempfile.mkdtemp(prefix="ct-exit-"))
        self.status_file = self.folder / "status"

    def install(self, env: MutableMapping[str, str] = os.environ) -> None:
        """Make the bash shells started with `env` from now on record their status."""
        hook = self.folder / "bash_env.sh"
        hook.write_text(_HOOK)
        if env.get("BASH_ENV"):
            env["CT_PREVIOUS_BASH_ENV"] = env["BASH_ENV"]
        env["BASH_ENV"] = str(hook)
        env["CT_EXIT_STATUS_FILE"] = str(self.status_file)

    def last(self) -> tuple[str, int | None, str] | None:
        """("start" | "exit", status, command) of the last shell recorded, or None."""
        try:
            lines = self.status_file.read_text().splitlines()
        except OSError:
            return None
        if not lines:
            return None
        event, status, command = (lines[-1].split("\t", 2) + ["", ""])[:3]
        return event, int(status) if status.lstrip("-").isdigit() else None, command

    def outside_signal(self) -> str | None:
        """After MLflow reported the run failed: the outside signal that ended the
        command ("" if the command failed by itself), or None if nothing was recorded
        (the hook was not in effect: MLflow no longer runs the command with bash)."""
        last = self.last()
        if last is None:
            return None
        event, status, _ = last
        if event == "start":  # the shell died without running its EXIT trap
            return "SIGKILL"
        if status == 0:  # the shell itself was ended by a signal it could trap
            return "a signal sent to its shell"
        return outside_signal(status)


def outside_signal(code: int | None) -> str:
    """The name of the outside signal a status 128+n (or -n) stands for, or ""."""
    if code is None:
        return ""
    number = -code if code < 0 else code - 128 if code > 128 else 0
    if number in {int(s) for s in OUTSIDE_SIGNALS}:
        return signal.Signals(number).name
    return ""
