"""EarthRanger's lists, read page by page: the one reader behind every list Tembo asks EarthRanger for (the
events an earlier try may have created, a source's assignments, the subjects of a name).

er-server answers a list as a plain JSON list or as a DRF page {count, next, previous, results} (its
StandardResultsSetPagination and OptionalResultsSetPagination in `utils/drf.py`), wrapped in {"data": ...,
"status": ...}. `next` is an absolute link to the following page, naming it by `page=N` (page number),
`cursor=` (DRF's cursor paginator, which er-client asks for with `use_cursor=true`) or `offset=`; null on
the last page.

A list is read through its `next` links as far as it goes. Each of these stops the read with a retryable
DeliveryError rather than take part of the list for the whole (which would make a second event, or a
second subject, for one the site already has): a `next` that names no page Tembo can ask for, or names a
page already read (a site looping on its own links); a page without its `results`; fewer items in all than
the first page's `count` (the list shrank while read, or a page was not linked); more pages than the
caller allows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from lora_bridge.notify.outbox import DeliveryError, shown_url

# How EarthRanger's `next` link names the following page (DRF's page-number, cursor and limit-offset
# paginators), in the order er-client looks for them.
PAGE_KEYS = ("page", "cursor", "offset")


def next_page(link: Any) -> tuple[str, str] | None:
    """The page EarthRanger's `next` link names, as (`page`, `cursor` or `offset`, its value), or None when
    it names none. Only the page is taken from the link, as er-client takes it, and asked of the
    configured root: a site behind a reverse proxy writes its inside address into its links, and the
    bearer token goes to no other host."""
    if not isinstance(link, str):
        return None
    query = parse_qs(urlsplit(link).query)
    for key in PAGE_KEYS:
        if query.get(key) and query[key][0]:
            return key, query[key][0]
    return None


def answer_data(response: httpx.Response) -> Any:
    """The `data` of EarthRanger's answer (or the whole body when it has none); an answer that is not JSON
    (a captive portal's page, a proxy's) is a retryable DeliveryError."""
    try:
        body = response.json()
    except ValueError:
        raise DeliveryError(f"EarthRanger's answer to {response.request.url.path} is not JSON "
                            f"({response.headers.get('content-type') or 'no content type'})") from None
    return body.get("data") if isinstance(body, dict) and "data" in body else body


def page_of(data: Any, path: str) -> tuple[list[dict[str, Any]], Any, int | None]:
    """The items of one list answer, its `next` link and its `count` (a plain list has neither); an answer
    that is neither a list nor a DRF page is an error, never an empty list."""
    if isinstance(data, list):
        return [i for i in data if isinstance(i, dict)], None, None
    if isinstance(data, dict) and isinstance(data.get("results"), list):
        count = data.get("count")
        return ([i for i in data["results"] if isinstance(i, dict)], data.get("next"),
                count if isinstance(count, int) and not isinstance(count, bool) else None)
    raise DeliveryError(f"EarthRanger's answer to {path} is not a list (no `results`)")


def read_pages(get: Callable[[dict[str, str]], httpx.Response], path: str, params: dict[str, str],
               max_pages: int) -> Iterator[list[dict[str, Any]]]:
    """The items of each page of the list at `path` (for messages), in order: `get(params)` asks for one page
    (the first with `params`, each next one with the page its predecessor's `next` names added). A caller
    that found what it looked for stops early; one that reads on meets the DeliveryError of a list that
    cannot be read to its end (see the module's docstring)."""
    asked: set[tuple[str, str]] = set()
    read = 0
    counted: int | None = None
    for _ in range(max_pages):
        items, following, count = page_of(answer_data(get(params)), path)
        read += len(items)
        counted = count if counted is None else counted
        yield items
        if not following:
            if counted is not None and read < counted:
                raise DeliveryError(f"EarthRanger's list at {path} gave {read} of the {counted} it counts: it "
                                    "changed while it was read, or its next page was not linked")
            return
        named = next_page(following)
        if named is None:
            raise DeliveryError(f"EarthRanger's link to the next page of {path} names no page: "
                                f"{shown_url(str(following))[:120]}")
        if named in asked or params.get(named[0]) == named[1]:
            raise DeliveryError(f"EarthRanger's link to the next page of {path} names a page already read "
                                f"({named[0]}={named[1]}): the list cannot be read to its end")
        asked.add(named)
        params = {**params, named[0]: named[1]}
    raise DeliveryError(f"EarthRanger's list at {path} runs past {max_pages} pages: not read further")
