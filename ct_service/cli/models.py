"""The registry commands' arguments: `ct-service history`, `rollback`, `approve` and
`reject`. What they do is in model_commands.py, imported only when one runs."""

from __future__ import annotations

import argparse

from ct_service.cli.arguments import described
from ct_service.settings import Settings

REGISTRY = "The registry is CT_REGISTRY_URI's (default: the tracking store's)."


def add_commands(commands: argparse._SubParsersAction) -> None:
    history = commands.add_parser(
        "history",
        help="list every change of a model's @production, newest first",
        **described(
            "Every decision about the model's @production, newest first: promotions, "
            "champions kept, rollbacks, candidates proposed, replaced, approved and "
            "rejected; each with its time, production's version before and after, the "
            "version it was about and both scores, what caused it (the pipeline and its "
            f"trigger, or the person) and its reason. {REGISTRY}",
            "ct-service history lenet",
            "ct-service history lenet --json",
        ),
    )
    history.add_argument("model", help="registered model name, e.g. lenet")
    history.add_argument("--json", action="store_true", help="print it as JSON")
    history.set_defaults(handler=_history)

    rollback = commands.add_parser(
        "rollback",
        help="give @production back to an earlier version",
        **described(
            "Give the model's @production alias (and stage Production) back to "
            "@previous-production's version, or with --to to any version that was in "
            "production; the version it replaces becomes @previous-production, so a "
            f"second rollback without --to undoes the first. Recorded in the history. {REGISTRY}",
            "ct-service rollback lenet",
            "ct-service rollback lenet --to 3",
        ),
    )
    rollback.add_argument("model", help="registered model name, e.g. lenet")
    rollback.add_argument(
        "--to", default="", metavar="VERSION", help="a version that was in production"
    )
    rollback.add_argument("--json", action="store_true", help="print the versions as JSON")
    rollback.set_defaults(handler=_rollback)

    approve = commands.add_parser(
        "approve",
        help="give @production to the version awaiting approval",
        **described(
            "Approve the version a manual project's pipeline left as @candidate: it "
            "takes @production (the version it replaces becomes @previous-production). "
            "Repeating it changes nothing; any other version than the candidate is "
            f"refused (exit 2). {REGISTRY}",
            "ct-service approve lenet 5",
        ),
    )
    approve.add_argument("model", help="registered model name, e.g. lenet")
    approve.add_argument("version", help="the version awaiting approval (@candidate)")
    approve.add_argument("--json", action="store_true", help="print the result as JSON")
    approve.set_defaults(handler=_approve)

    reject = commands.add_parser(
        "reject",
        help="drop the version awaiting approval, with a reason",
        **described(
            "Reject the version a manual project's pipeline left as @candidate: it "
            "loses the alias, @production stays where it is, and the reason is recorded "
            "on the version and in the history. Repeating it changes nothing; any other "
            f"version than the candidate is refused (exit 2). {REGISTRY}",
            "ct-service reject lenet 5 --reason 'fails on the March data'",
        ),
    )
    reject.add_argument("model", help="registered model name, e.g. lenet")
    reject.add_argument("version", help="the version awaiting approval (@candidate)")
    reject.add_argument("--reason", required=True, help="why, for the history")
    reject.add_argument("--json", action="store_true", help="print the result as JSON")
    reject.set_defaults(handler=_reject)


def _history(args: argparse.Namespace, settings: Settings) -> int:
    from ct_service.cli import model_commands

    return model_commands.history(args, settings)


def _rollback(args: argparse.Namespace, settings: Settings) -> int:
    from ct_service.cli import model_commands

    return model_commands.rollback(args, settings)


def _approve(args: argparse.Namespace, settings: Settings) -> int:
    from ct_service.cli import model_commands

    return model_commands.approve(args, settings)


def _reject(args: argparse.Namespace, settings: Settings) -> int:
    from ct_service.cli import model_commands

    return model_commands.reject(args, settings)
