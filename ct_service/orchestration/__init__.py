"""A pipeline's steps and how they travel: pipeline.py holds the steps (start ->
run_attempt -> decide -> promote -> notify) and their task names; queue.py builds
the Celery app and sends a step by name."""
