"""The checks every paged listing of a VCF surface goes through (SDDC Manager's credentials,
fleet management's password accounts and locker entries), so that an incomplete or repeated
listing is never taken for a complete one (the sync would mark the rest absent): no page
repeating the one before, no id twice, no empty page before the reported total, and as many
items as the last reported total."""

from __future__ import annotations

from collections.abc import Sequence

from .failures import clean_text
from .models import VcfError


class PageCheck:
    """One listing's pages, checked in order as they arrive.

    ``listing`` names the list in messages (``/v1/credentials``), ``id_name`` its ids
    (``credential id``), ``reporter`` and ``noun`` the final count's message (``SDDC Manager
    reported 10 credentials but returned 9``).
    """

    def __init__(self, listing: str, id_name: str, reporter: str, noun: str) -> None:
        self.listing, self.id_name, self.reporter, self.noun = listing, id_name, reporter, noun
        self.count = 0
        self.total: int | None = None
        self._seen: set[str] = set()
        self._previous: list[str] | None = None

    def add(self, page: int, ids: Sequence[str | None], total: int | None) -> None:
        """Check one page: the ids of its items in order (None where an item has none) and
        the total the page reports (None when it reports none)."""
        present = [i for i in ids if i is not None]
        if page > 0 and present and present == self._previous:
            raise VcfError(
                "malformed",
                f"page {page} of {self.listing} repeats the previous page "
                "(the server ignores the page asked for)",
            )
        self._previous = present
        for item_id in present:
            if item_id in self._seen:
                raise VcfError(
                    "malformed",
                    f"{self.id_name} {clean_text(item_id, 80)} was returned twice; "
                    "the list changed while it was read, try again",
                )
            self._seen.add(item_id)
        if not ids and self.total is not None and self.count < self.total:
            raise VcfError(
                "malformed",
                f"page {page} of {self.listing} is empty after {self.count} of "
                f"{self.total} {self.noun}; the list changed while it was read, try again",
            )
        self.count += len(ids)
        if total is not None:
            self.total = total

    def ended(self, page_items: int, page_size: int) -> bool:
        """Whether the listing ends with the page just added: the total is reached, or,
        without one, the page was empty or short."""
        if self.total is not None:
            return self.count >= self.total
        return page_items < page_size

    def complete(self) -> None:
        """VcfError when the count read disagrees with the last reported total."""
        if self.total is not None and self.total != self.count:
            raise VcfError(
                "malformed",
                f"{self.reporter} reported {self.total} {self.noun} but returned "
                f"{self.count}; the list changed while it was read, try again",
            )


def reported_int(value: object) -> int | None:
    """A count a server reports, when it is a whole number of at least 0."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None
