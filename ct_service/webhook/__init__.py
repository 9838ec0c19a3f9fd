"""The push webhook, where a push becomes a pipeline: push.py parses and verifies a
git host's delivery, views.py holds the endpoints, app.py the factory;
sample_push.py sends a signed test push. A push is recorded by
ct_service/orchestration/pushes.py, where workers read it; the allow-list it checks
pushes against is ct_service/repositories.py."""
