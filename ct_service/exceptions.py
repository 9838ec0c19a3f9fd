"""Domain errors. Each carries the HTTP status a web layer would answer with."""

from __future__ import annotations


class CtError(Exception):
    """Base of every expected ct-service error; its message is meant for users."""

    status_code = 400


class SettingsError(CtError):
    """A CT_* variable is missing, malformed or out of range; the message names it."""


class ProjectError(CtError):
    """The MLflow project cannot be used: no MLproject, a bad ct.yaml, an unknown parameter."""

    status_code = 422


class NoEnvironmentImage(ProjectError):
    """No image is known for the project's environment (CT_EXECUTION=auto runs it locally)."""


class PipelineNotFound(CtError):
    status_code = 404


class AmbiguousPipelineId(CtError):
    """A short pipeline id that starts more than one pipeline's id."""


class PushError(CtError):
    """A request that is not a usable push; status_code says how to answer."""


class UnknownProvider(PushError):
    status_code = 400


class BadSignature(PushError):
    status_code = 401


class BadPayload(PushError):
    status_code = 422


class CheckoutError(CtError):
    """The pushed commit could not be fetched."""

    status_code = 502


class RegistryError(CtError):
    """A registry request that cannot be done as asked."""

    status_code = 409


class ModelNotFound(RegistryError):
    """No registered model of that name; the message names the ones there are."""

    status_code = 404


class RollbackError(RegistryError):
    """No earlier production version to go back to, or not one that was in production."""


class ApprovalError(RegistryError):
    """Approving or rejecting a version that is not the candidate awaiting approval."""


class InfrastructureError(CtError):
    """A dependency (broker, tracking server, registry) failed; the step is retried."""

    status_code = 503


class StatusHostUnavailable(InfrastructureError):
    """A git host's status API did not take a commit status for now (a timeout, a
    refused connection, 429 or 5xx): the report is sent again later."""


def is_infrastructure_failure(error: BaseException) -> bool:
    """Broken connections and locked stores are retried; everything else is a real failure."""
    if isinstance(error, (InfrastructureError, ConnectionError, TimeoutError)):
        return True
    name = type(error).__name__
    if name in {"OperationalError", "ConnectionError", "Timeout", "ReadTimeout"}:
        return True
    message = str(error).lower()
    return "database is locked" in message or "connection refused" in message


class DataError(ProjectError):
    """A declared data source cannot be used: a bad `data` block, an unknown bucket or
    folder, a key the store refuses; the message names the file, key or URL."""


class DataUnreachable(InfrastructureError):
    """The data store did not answer; the step is retried."""
