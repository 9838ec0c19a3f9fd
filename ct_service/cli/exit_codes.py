"""What `ct-service` exits with; scripts and CI jobs read these."""

# the target was reached: promoted, production kept because it is better, or the
# winner awaits approval; for the registry commands: done
EXIT_OK = 0
EXIT_FAILED = 1  # the pipeline failed (an error, or no attempt finished)
EXIT_USAGE = 2  # bad input: settings, project, arguments
EXIT_MISSED = 3  # the pipeline ended without reaching its target: budget spent, or stopped
EXIT_NOT_FOUND = 4  # no such pipeline
EXIT_INTERRUPTED = 130  # interrupted (Ctrl-C, SIGTERM): the pipeline is cancelled

MEANINGS = {
    EXIT_OK: "target reached: promoted, production kept because it is better, or the "
    "winner awaits approval (promotion: manual)",
    EXIT_FAILED: "the pipeline failed (an error, or no attempt finished)",
    EXIT_USAGE: "bad input: settings, project, arguments (one line says which)",
    EXIT_MISSED: "target not reached: budget spent, or the policy stopped",
    EXIT_NOT_FOUND: "no such pipeline",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C, SIGTERM): the pipeline is cancelled",
}


def described() -> str:
    """The exit codes as a --help section."""
    return "exit codes:\n" + "\n".join(f"  {code}  {text}" for code, text in MEANINGS.items())
