"""How the webhook is served in production: gunicorn's settings, the one place that
says so (compose.yaml, `ct-service serve --help` and the tests start it with
`gunicorn -c python:ct_service.webhook.gunicorn_conf`; `-b` overrides the address).

Threads, not processes, take the connections (`gthread`): a client that sends its
body a byte a second holds one thread until the body deadline
(CT_WEBHOOK_BODY_SECONDS, body_deadline.py) answers it 408, while the other threads
serve everyone else; the two sync workers this replaces were both held by two such
clients (/healthz answered after 34 s). A connection that has sent nothing yet
waits in the worker's poller, not in a thread, and is closed after `keepalive`.
Measured: /healthz within 1 s while 50 clients trickle their bodies
(tests/test_slow_clients.py).
"""

wsgi_app = "ct_service.webhook.app:create_app()"
bind = ["0.0.0.0:8000"]
worker_class = "gthread"
workers = 2
threads = 64  # per worker: slow clients served at once, each until its body deadline
keepalive = 5  # seconds an idle connection is kept
timeout = 30  # a worker whose main loop stops answering is restarted
graceful_timeout = 30
