"""The dict round trip every config dataclass shares (config.json sections, checkpoint metadata)."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, TypeVar

T = TypeVar("T", bound="DictConfig")


class DictConfig:
    """``to_dict()`` and ``from_dict()`` for a dataclass; keys the class does not know are ignored, so a
    directory written by a newer version with more settings still loads."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in known})
