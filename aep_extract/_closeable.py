"""Context-manager support shared by the interfaces: ``with`` calls ``close()``."""

from __future__ import annotations

from types import TracebackType
from typing import Optional, TypeVar

_Self = TypeVar("_Self", bound="Closeable")


class Closeable:
    """Adds ``with`` support to a class whose resources ``close()`` releases."""

    def close(self) -> None:
        """Release resources (optional override)."""

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()
