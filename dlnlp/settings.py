"""The dict round trip every config dataclass shares (config.json sections, checkpoint metadata)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
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


@dataclass(frozen=True)
class GivenOption:
    """An option typed on the command line (not left at its default), as ``--resume`` and ``--init-from``
    compare it with a saved run: its value and how to write it back (``--layers 4``, ``--no-bias``)."""

    name: str                 # the parameter's name (``block_size``)
    value: Any
    flag: str                 # ``--block-size``
    off_flag: str | None = None  # a boolean's negative spelling (``--no-bias``), if it has one

    @property
    def typed(self) -> str:
        """The option as typed (``--no-bias`` for a boolean given false)."""
        return self.show().split(" ", 1)[0] if not isinstance(self.value, bool) or self.value or self.off_flag \
            else self.flag

    def show(self, value: Any = None, *, saved: bool = False) -> str:
        """How ``value`` (default: the given one) is written on a command line."""
        value = self.value if value is None and not saved else value
        if isinstance(value, bool):
            if value:
                return self.flag
            return self.off_flag or f"no {self.flag}"
        return f"{self.flag} {value}"
