"""The push webhook, where a push becomes a pipeline: push.py parses and verifies a
git host's delivery, deliveries.py remembers which push started which pipeline,
views.py holds the endpoints, app.py the factory; sample_push.py sends a signed test
push. The allow-list it checks pushes against is ct_service/repositories.py."""
