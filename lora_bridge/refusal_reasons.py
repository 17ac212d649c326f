"""What a network server said when it refused a call, as an operator reads it in the log.

The Things Stack answers a refused call with its error JSON (`{"code": 7, "message":
"error:pkg/auth/rights:no_user_rights (no rights for user ...)", "details": [{"namespace", "name",
"message_format", "attributes", "correlation_id"}]}`, docs "API > Concepts > Errors"); ChirpStack v4's REST
gateway with grpc-gateway's status JSON (`{"code": 5, "message": "Object does not exist", "details": []}`),
older gateways with `{"error": ..., "message": ...}`; a proxy before either with text or HTML. The reason is
the server's `message` (with TTS's `correlation_id`, which its operators ask for), else the text: escaped
(a hostile server must not forge log lines with a newline or a terminal's control sequence) and cut to
`REASON_CHARS`. Until 7 December the log said only `network server answered '…' (HTTP 403)`, and the operator
could not tell a wrong API key from a device the network does not know.
"""

from __future__ import annotations

import json

import httpx

from lora_bridge.errors import DownlinkError, driver_said
from lora_bridge.uplink_formats import escaped_text

# The longest reason logged: TTS's messages run to about 150 characters, a proxy's HTML page to kilobytes.
REASON_CHARS = 300
# What of an answer's body is read for its reason: an error JSON whole (a hostile one padded to hide its
# escapes past a cut would be read as text), not the megabytes a server (or a proxy) may send.
BODY_READ_CHARS = 65536


def refusal_reason(response: httpx.Response) -> str:
    """What the server said of a refused call (its error JSON's message, else its text), escaped and cut
    to REASON_CHARS; "no reason given" for an empty body."""
    text = response.text[:BODY_READ_CHARS]
    said = _said_in_json(text)
    return escaped_text(said if said is not None else text, REASON_CHARS) or "no reason given"


def _said_in_json(text: str) -> str | None:
    """The message of a TTS or grpc-gateway error JSON (with TTS's correlation id), or None."""
    try:
        answer = json.loads(text)
    except ValueError:
        return None
    if not isinstance(answer, dict):
        return None
    message = next((answer[key] for key in ("message", "error") if isinstance(answer.get(key), str)
                    and answer[key].strip()), None)
    if message is None:
        return None
    details = answer.get("details")
    first = details[0] if isinstance(details, list) and details and isinstance(details[0], dict) else {}
    correlation = first.get("correlation_id")
    return f"{message} (correlation_id {correlation})" if isinstance(correlation, str) and correlation else message


def push_failure_said(error: DownlinkError) -> str:
    """What the log says of a failed push: the server's answer with its reason when it answered (its
    reason escaped and bounded by `refusal_reason`), else what went wrong without the values it quotes."""
    return str(error) if error.status is not None else driver_said(error)
