"""Bringing an answer into view: the page script that scrolls one keyed part of a page (a container made
with `st.container(key=...)`) into view once it is drawn, as little as needed. On a phone the button a
ranger or a field technician tapped may sit at the foot of the screen, and the answer drawn under it
would be out of sight."""

from __future__ import annotations

import json

# How many animation frames the script looks for the part before it gives up (about a second): the part
# is drawn before the script in the same run, so it is almost always there at the first look.
LOOKS = 60


def script(key: str, said: int) -> str:
    """The `<script>` (for `st.html(..., unsafe_allow_javascript=True)`) that brings the container keyed
    `key` into view. `said` numbers the answer in the session: the browser runs a page script only when
    it first draws it, so each answer's script must differ from the last one drawn at the same place."""
    selector = json.dumps(f".st-key-{key}")
    return (
        f"<script>/* answer {int(said)} */ (function look(left) {{"
        f" var part = document.querySelector({selector});"
        ' if (part) { part.scrollIntoView({block: "nearest"}); }'
        " else if (left > 0) { requestAnimationFrame(function () { look(left - 1); }); }"
        f" }})({LOOKS});</script>"
    )
