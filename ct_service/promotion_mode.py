"""Whether a pipeline's winner takes @production by itself or waits for a person:
`promotion: automatic` (the default) or `manual`, in a project's ct.yaml and, per
repository or per branch, in the operator's repositories.yaml. Manual wins: a project
may ask for more care than its repository's entry, never for less."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any


class PromotionMode(str, Enum):
    AUTOMATIC = "automatic"  # the winner takes @production if it beats the champion
    MANUAL = "manual"  # the winner gets @candidate; a person approves or rejects it


def parse_mode(value: Any, where: str) -> PromotionMode:
    """A mode from YAML; ValueError naming `where` and the choices otherwise."""
    try:
        return PromotionMode(value)
    except ValueError:
        choices = " or ".join(m.value for m in PromotionMode)
        raise ValueError(f"{where} must be {choices}, got {value!r}") from None


def parse_branch_modes(value: Any, where: str) -> dict[str, PromotionMode]:
    """repositories.yaml's `promotion`: one mode for every branch (`manual`), or one
    per branch (`{main: manual, dev: automatic}`); "*" stands for the other branches."""
    if isinstance(value, Mapping):
        return {
            str(branch): parse_mode(mode, f"{where}.{branch}") for branch, mode in value.items()
        }
    return {"*": parse_mode(value, where)}


def required(
    project: PromotionMode | None, repository: Mapping[str, PromotionMode], branch: str
) -> PromotionMode:
    """The mode a pipeline's winner is promoted with: manual if its project's ct.yaml
    or its repository's entry for its branch says so."""
    chosen = repository.get(branch, repository.get("*", PromotionMode.AUTOMATIC))
    if project is PromotionMode.MANUAL or chosen is PromotionMode.MANUAL:
        return PromotionMode.MANUAL
    return PromotionMode.AUTOMATIC
