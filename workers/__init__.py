"""Celery side of ct-service: the app, its queues and the thin tasks."""
