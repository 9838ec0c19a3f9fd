"""What `ct-service` exits with; scripts and CI jobs read these."""

EXIT_OK = 0  # the target was reached: promoted, or production kept because it is better
EXIT_FAILED = 1  # the pipeline failed (an error, or no attempt finished)
EXIT_USAGE = 2  # bad input: settings, project, arguments
EXIT_MISSED = 3  # the pipeline ended without reaching its target: budget spent, or stopped
EXIT_NOT_FOUND = 4  # no such pipeline
EXIT_INTERRUPTED = 130  # interrupted (Ctrl-C, SIGTERM): the pipeline is cancelled
