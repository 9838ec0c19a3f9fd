"""The tracking server account the worker's gateway forwards training's calls with.

On a server that runs MLflow's basic-auth app, the worker (logged in with the
service's own account, an admin) makes sure the training account exists with the
operator's password and may edit the runs of the experiment it is about to train
in: EDIT on that experiment, nothing more. Every other permission is the server's
default (READ in compose.yaml). The gateway (gateway.py) admits only the attempt's
own run; this account is the server's own check behind it, should the gateway admit
more than it should. Containers never hold it.

It calls the auth app's REST endpoints with MLflow's own request helpers: the
`mlflow.server.auth.client` module would import the whole auth server (Flask-WTF and
all) into every worker just to send three requests.
"""

from __future__ import annotations

import threading
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.utils.credentials import get_default_host_creds
from mlflow.utils.rest_utils import http_request, verify_rest_response

from ct_service.exceptions import InfrastructureError

# The basic-auth app's endpoints (mlflow/server/auth/routes.py) and what they take.
CREATE_USER = "/api/2.0/mlflow/users/create"
UPDATE_PASSWORD = "/api/2.0/mlflow/users/update-password"
GRANT = "/api/3.0/mlflow/users/permissions/grant"
REVOKE = "/api/3.0/mlflow/users/permissions/revoke"
GET_PERMISSION = "/api/3.0/mlflow/users/permissions/get"


class TrainingAccount:
    def __init__(self, tracking_uri: str, username: str, password: str):
        self.tracking_uri = tracking_uri
        self.username = username
        self.password = password
        self._ready = False
        self._granted: set[str] = set()
        self._lock = threading.Lock()

    def credentials(self) -> dict[str, str]:
        """What a container logs in with (environment entries of the API call)."""
        return {
            "MLFLOW_TRACKING_USERNAME": self.username,
            "MLFLOW_TRACKING_PASSWORD": self.password,
        }

    def allow(self, experiment_id: str) -> None:
        """The account exists with the configured password and may edit the runs of
        `experiment_id`; done once per process and experiment."""
        with self._lock:
            if experiment_id in self._granted:
                return
            try:
                if not self._ready:
                    self._ensure_user()
                    self._ready = True
                self._grant_edit(experiment_id)
            except MlflowException as error:
                raise InfrastructureError(
                    f"cannot give the training account {self.username!r} access to experiment "
                    f"{experiment_id} on the tracking server: {error.message}"
                ) from None
            self._granted.add(experiment_id)

    def _ensure_user(self) -> None:
        account = {"username": self.username, "password": self.password}
        try:
            self._request(CREATE_USER, "POST", account)
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            # The operator may have rotated the secret since the account was made.
            self._request(UPDATE_PASSWORD, "PATCH", account)

    def _grant_edit(self, experiment_id: str) -> None:
        """EDIT, kept if another worker granted it already (never revoked while its
        containers log); a grant someone changed since is replaced."""
        resource = {
            "username": self.username,
            "resource_type": "experiment",
            "resource_id": experiment_id,
        }
        try:
            self._request(GRANT, "POST", {**resource, "permission": "EDIT"})
            return
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        if self._request(GET_PERMISSION, "GET", resource).get("permission") != "EDIT":
            self._request(REVOKE, "POST", resource)
            self._request(GRANT, "POST", {**resource, "permission": "EDIT"})

    def _request(self, endpoint: str, method: str, body: dict[str, Any]) -> dict[str, Any]:
        """As the service's own account (MLFLOW_TRACKING_USERNAME/_PASSWORD)."""
        arguments: dict[str, Any] = {"params": body} if method == "GET" else {"json": body}
        response = http_request(
            get_default_host_creds(self.tracking_uri), endpoint, method, **arguments
        )
        verify_rest_response(response, endpoint)
        return dict(response.json()) if response.content else {}
