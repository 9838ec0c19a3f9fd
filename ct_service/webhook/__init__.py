"""The push webhook, where a push becomes a pipeline: push.py parses and verifies a
git host's delivery, repositories.py is the allow-list, deliveries.py remembers
which push started which pipeline, views.py the endpoints, app.py the factory;
sample_push.py sends a signed test push."""
