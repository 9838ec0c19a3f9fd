"""The webhook's commands: `ct-service serve` and `ct-service send-sample`."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ct_service.cli.arguments import described
from ct_service.cli.exit_codes import EXIT_FAILED, EXIT_OK
from ct_service.exceptions import CtError
from ct_service.settings import Settings


def add_commands(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the push webhook (development server; use gunicorn in production)",
        **described(
            "Serve POST /hooks, GET /pipelines, GET /pipelines/<id> and GET /healthz. "
            "Needs CT_BROKER_URL and CT_REPOSITORIES_FILE. In production: "
            "gunicorn -c python:ct_service.webhook.gunicorn_conf (threads, and a deadline "
            "on request bodies: CT_WEBHOOK_BODY_SECONDS; add -b HOST:PORT to listen "
            "elsewhere than 0.0.0.0:8000)",
            "CT_BROKER_URL=redis://127.0.0.1:6379/0 CT_REPOSITORIES_FILE=repositories.yaml "
            "ct-service serve --port 8000",
        ),
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    serve.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    serve.set_defaults(handler=_serve)

    sample = commands.add_parser(
        "send-sample",
        help="send a correctly signed sample push to a running webhook",
        **described(
            "Build a push in the format of the repository's git host, sign it with "
            "its secret from CT_REPOSITORIES_FILE and POST it to URL/hooks.",
            "CT_REPOSITORIES_FILE=repositories.yaml ct-service send-sample "
            "http://127.0.0.1:8000 acme/models --branch main",
        ),
    )
    sample.add_argument("url", help="the webhook's base URL, e.g. http://127.0.0.1:8000")
    sample.add_argument(
        "repository", help="a repository name from the allow-list, e.g. acme/models"
    )
    sample.add_argument("--branch", help="default: the first watched branch")
    sample.add_argument("--commit", help="default: the branch's tip (git ls-remote)")
    sample.set_defaults(handler=_send_sample)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from ct_service.webhook.app import create_app  # Flask: only for this command

    create_app(settings).run(host=args.host, port=args.port)
    return EXIT_OK


def _send_sample(args: argparse.Namespace, settings: Settings) -> int:
    from ct_service.repositories import load_repositories
    from ct_service.webhook import sample_push

    if not settings.repositories_file:
        raise CtError(
            "CT_REPOSITORIES_FILE: name the allow-list that holds the repository's secret"
        )
    found = load_repositories(Path(settings.repositories_file), os.environ, settings.git_allow_file)
    matches = [r for (_, name), r in found.items() if name == args.repository]
    if not matches:
        raise CtError(f"{args.repository} is not in {settings.repositories_file}")
    repository = matches[0]
    branch = args.branch or repository.branches[0]
    try:
        commit = args.commit or sample_push.tip_of(repository, branch)
    except ValueError as error:
        raise CtError(str(error)) from None
    status, answer = sample_push.send(args.url, repository, branch, commit)
    print(f"{status} {json.dumps(answer)}")
    return EXIT_OK if status < 400 else EXIT_FAILED
