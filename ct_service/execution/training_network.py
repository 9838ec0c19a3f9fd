"""The network training containers run on, and where the gateway listens on it.

Containers never share the host's network: they join CT_DOCKER_NETWORK, by default
`ct-attempts`, an internal Docker network that ct-service creates on first use (no
route out of it; the engine drops traffic to other networks). The only service on
it is the worker's gateway (gateway.py): bound to the worker's address on that
network, so the host's loopback services (Redis, the local MLflow server, anything
on 127.0.0.1) are out of reach. A worker on the host listens on the network's
gateway address; a worker that runs in a container attached to the network (Docker
Compose) on its own address there.
"""

from __future__ import annotations

import os
import socket

import docker
from docker.errors import APIError, NotFound

from ct_service.exceptions import InfrastructureError, SettingsError

DEFAULT_NETWORK = "ct-attempts"  # not compose's ct-training: each its own
MANAGED_LABEL = "ct-service.training-network"  # on a network ct-service created


def ensure(client: docker.DockerClient, name: str) -> None:
    """The network `name` exists; the default one is created (internal) when missing.
    A network the operator named must exist already, and must not be the host's."""
    if name in ("host", "none") or name.startswith("container:"):
        raise SettingsError(
            f"CT_DOCKER_NETWORK={name}: training containers need a network of their own "
            "(a bridge network, internal where nothing outside it must be reached)"
        )
    try:
        client.networks.get(name)
        return
    except NotFound:
        if name != DEFAULT_NETWORK:
            raise SettingsError(
                f"CT_DOCKER_NETWORK={name}: no such Docker network; create it "
                f"(docker network create --internal {name}) or leave the setting out"
            ) from None
    try:
        client.networks.create(name, driver="bridge", internal=True, labels={MANAGED_LABEL: "1"})
    except APIError as error:
        if error.status_code != 409:  # another worker created it meanwhile
            raise InfrastructureError(f"cannot create the Docker network {name}: {error}") from None


def gateway_address(client: docker.DockerClient, name: str) -> str:
    """The address on network `name` that this process can listen on and that the
    network's containers reach: this container's own, if it runs in one attached to
    the network, else the network's gateway on the host."""
    own = _own_container_address(client, name)
    if own:
        return own
    network = client.networks.get(name)
    for config in network.attrs.get("IPAM", {}).get("Config") or []:
        if config.get("Gateway"):
            return str(config["Gateway"]).split("/")[0]
    raise InfrastructureError(
        f"the Docker network {name} has no gateway address on this host, and this worker "
        "is not a container attached to it: containers could not reach the gateway"
    )


def _own_container_address(client: docker.DockerClient, name: str) -> str:
    if not os.path.exists("/.dockerenv"):
        return ""
    try:
        attrs = client.containers.get(socket.gethostname()).attrs
    except (NotFound, APIError):
        return ""
    found = attrs.get("NetworkSettings", {}).get("Networks", {})
    return str(found.get(name, {}).get("IPAddress", ""))
