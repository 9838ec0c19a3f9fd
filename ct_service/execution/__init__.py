"""Where an attempt runs: the executor protocol (executor.py), the local and Docker
backends (local.py, docker.py) and the one place that picks between them
(loader.py); the launcher process, environment detection and images, the local
tracking server that containers log to, and the lease a running attempt renews."""
