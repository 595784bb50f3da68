"""One page of a long admin list (users, the audit, the capacity audit): which rows to read, and
what the pager under the table shows."""

from __future__ import annotations

from dataclasses import dataclass

PAGE_SIZE = 50
# Beyond it a page number is clamped: an absurd one must not become an absurd OFFSET.
MAX_PAGE = 1_000_000


@dataclass(frozen=True)
class Page:
    """The page asked for, clamped to 1..MAX_PAGE."""

    number: int
    size: int = PAGE_SIZE

    @classmethod
    def asked(cls, number: int) -> Page:
        return cls(min(max(number, 1), MAX_PAGE))

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size

    def pager(self, total: int) -> dict[str, int]:
        """What `_tables.html`'s pager reads: this page, how many there are, how many rows."""
        return {
            "page": self.number,
            "pages": max((total + self.size - 1) // self.size, 1),
            "total": total,
        }
