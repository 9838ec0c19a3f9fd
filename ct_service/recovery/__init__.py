"""Putting pipelines back on their feet: resume.py continues an attempt whose process
died from its last checkpoint; watchdog.py (Celery beat) finds dead attempts and lost
steps. The lease they read is renewed by the running attempt (execution/lease.py)."""
