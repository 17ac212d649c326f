"""Alerts page: the queue of open alerts (priority, then the longest waiting), each with its own
buttons, so on a phone the ranger acts where the alert is; the chosen alert's evidence; resolved
alerts with their verdicts; the alerts Tembo closed itself that await a ranger's verdict; each
type's precision from those verdicts.

The queue refreshes itself (a Streamlit fragment). Acknowledging, assigning and resolving carry the
ranger's name; a verdict is chosen afresh for every alert (its widgets are the alert's own).

The page costs the same for a herd of 5 and of 500: the first QUEUE_CARDS alerts are cards (more on
request), the whole queue is one table, and an alert's verdict, note and hand-over appear in its card
only when the ranger opens them ("Resolve…"), so a long queue is not hundreds of widgets that the
browser lays out unseen (measured in docs/dashboard.md).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import streamlit as st

from lora_bridge.domain.alerts import NOTE_MAX_CHARS
from lora_bridge.errors import BridgeError, is_transient_store_error
from lora_bridge.views import AlertView
from ranger_dashboard import (
    as_of,
    config,
    data,
    evidence,
    login,
    markers,
    navigation,
    palette,
    roles,
    selection,
    views,
)

logger = logging.getLogger(__name__)

FLASH_KEY = "alerts_flash"
# Alerts drawn as cards with their own buttons (a phone shows two or three a screen); the rest of a
# long queue is in the table under them, and "More alerts as cards" adds as many again.
QUEUE_CARDS = 5
CARDS_SHOWN_KEY = "_alert_cards_shown"
# The one alert whose verdict, note and hand-over are open in its card.
RESOLVING_KEY = "_alert_resolving"
RESOLVED_SHOWN = 50
# Evidence: the animal's track this long before and after the alert was raised.
EVIDENCE_WINDOW = timedelta(hours=12)
# While the store is busy the page shows the alerts this viewer was last shown on it, not live: every
# button that writes is off, and says why, so nobody acts on an out-of-date state.
NOT_LIVE_HELP = (f"{views.NOT_LIVE_HEADLINE}, so this alert may have changed since it was read. "
                 "Acknowledge, assign and resolve return with the store.")

options = config.options()
url = options.database_url
viewer = roles.current_viewer()
role = roles.role(viewer.role)
moment = as_of.control(data.now(options, viewer, when_busy=data.LAST_ALERTS_READ))


def flash(message: str) -> None:
    """Say `message` once, at the top of the queue after the next run."""
    st.session_state[FLASH_KEY] = message


def act(action: str, done: str, call, *args, then=None) -> None:  # noqa: ANN001
    """Run a bridge write; only once the store has kept it say `done` (after the rerun) and run `then`.

    A ranger must never read that an alert is hers when it is not: the second of two rangers tapping at
    once, or a store that cannot take the write (a backup holding SQLite's lock, a PostgreSQL fail-over),
    is told beside the alert that nothing was kept, and her verdict and note stay in the open form."""
    try:
        call(*args)
    except BridgeError as error:
        st.error(f"Could not {action}: {error}")
        return
    except Exception as error:
        if not is_transient_store_error(error):
            raise
        logger.warning("alert write not kept: %s", type(error).__name__, extra={"user": viewer.username})
        st.error(f"Could not {action}: the Tembo store is busy and kept nothing. Try again in a moment.")
        return
    flash(done)
    if then is not None:
        then()
    st.rerun(scope="app")


def closed(alert_id: int) -> None:
    """Close alert `alert_id`'s form and let go of it as the chosen alert (it has just been resolved)."""
    st.session_state[RESOLVING_KEY] = None
    if st.session_state.get("alert") == str(alert_id):
        selection.mirror("alert", None)
        del st.session_state["alert"]


def open_form(alert_id: int | None) -> None:
    """Open the verdict, note and hand-over of alert `alert_id` in its card (None: close it)."""
    st.session_state[RESOLVING_KEY] = alert_id


def more_cards(shown: int) -> None:
    """Show QUEUE_CARDS more alerts of the queue as cards."""
    st.session_state[CARDS_SHOWN_KEY] = shown + QUEUE_CARDS


def alert_card(alert: AlertView, now, ranger: str, stale: bool = False) -> None:  # noqa: ANN001
    """One alert of the queue with its buttons: acknowledge, resolve with a verdict and a note, assign;
    `stale` (the alert as last read while the store is busy): the buttons that write are off."""
    alert_id = alert.alert_id
    colour = palette.priority_badge_colour(alert.priority)
    with st.container(border=True, key=f"alert-card-{alert_id}"):
        st.markdown(
            f":{colour}[**{palette.priority_label(alert.priority).upper()}**] · "
            f"**{views.alert_type_label(alert.alert_type)}** · {views.name_of(alert)} · "
            f"{views.format_age(alert.time, now)}  \n"
            f"{views.state_text(alert)}"
            + (f" · assigned to **{alert.assigned_to}**" if alert.assigned_to else "")
            + (f" · raised {alert.occurrences} times" if alert.occurrences > 1 else "")
        )
        if not role.handles_alerts:
            return
        if as_of.current() is not None:
            st.caption("This is the alert as it stood then: back to live to act on it.")
            return
        if stale:
            st.caption("Not live: acknowledge, assign and resolve wait for the store.")
        buttons = st.columns(4)
        if buttons[0].button(
            "Acknowledge",
            key=f"acknowledge-{alert_id}",
            disabled=stale or not ranger or not views.can_acknowledge(alert),
            help=NOT_LIVE_HELP if stale else "Tell the other rangers you are on it.",
            width="stretch",
        ):
            act("acknowledge", f"Alert acknowledged by {ranger}.", data.acknowledge_alert, url, alert_id, viewer)
        if buttons[1].button("Evidence", key=f"show-{alert_id}", width="stretch"):
            st.session_state["alert"] = str(alert_id)
            selection.mirror("alert", str(alert_id))
            st.rerun(scope="app")
        if buttons[2].button(
            "Assign to me",
            key=f"take-{alert_id}",
            disabled=stale or not ranger or alert.assigned_to == ranger,
            help=NOT_LIVE_HELP if stale else None,
            width="stretch",
        ):
            act("assign", f"Alert assigned to {ranger}.", data.assign_alert, url, alert_id, ranger, viewer)
        resolving = st.session_state.get(RESOLVING_KEY) == alert_id
        buttons[3].button(
            "Close form" if resolving else "Resolve…",
            key=f"open-resolve-{alert_id}",
            help=NOT_LIVE_HELP if stale and not resolving else "Give a verdict and a note, or hand the alert to another ranger.",
            width="stretch",
            # Off while stale, unless open already: her verdict and note wait in it for the store.
            disabled=stale and not resolving,
            on_click=open_form,
            args=(None if resolving else alert_id,),
        )
        if not resolving:
            return
        with st.container(border=True, key=f"resolve-form-{alert_id}"):
            verdict = st.radio(
                "Verdict",
                list(views.VERDICTS),
                index=None,
                key=f"verdict-{alert_id}",
                horizontal=True,
            )
            note = st.text_input("Note", key=f"note-{alert_id}", placeholder="What you found",
                                 max_chars=NOTE_MAX_CHARS)
            if st.button(
                "Resolve",
                key=f"resolve-{alert_id}",
                type="primary",
                disabled=stale or not ranger or verdict is None or not views.can_resolve(alert),
                help=NOT_LIVE_HELP if stale else "Close the alert with your verdict.",
            ):
                act(
                    "resolve", f"Alert resolved by {ranger}: {verdict.lower()}.", data.resolve_alert, url,
                    alert_id, viewer, views.VERDICTS[verdict], note, then=lambda: closed(alert_id),
                )
            assignee = st.text_input("Hand over to", key=f"assignee-{alert_id}", placeholder="Ranger's name")
            if st.button("Assign", key=f"assign-{alert_id}", disabled=stale or not ranger or not assignee.strip(),
                         help=NOT_LIVE_HELP if stale else None):
                act("assign", f"Alert assigned to {assignee.strip()}.", data.assign_alert, url, alert_id, assignee,
                    viewer)


def verdict_card(alert: AlertView, ranger: str, stale: bool = False) -> None:
    """An alert Tembo closed itself, with the ranger's verdict and note to give (not while `stale`)."""
    alert_id = alert.alert_id
    with st.container(border=True, key=f"closed-card-{alert_id}"):
        st.markdown(
            f"**{views.alert_type_label(alert.alert_type)}** · {views.name_of(alert)} · "
            f"raised {views.format_time(alert.time)} UTC · closed {views.format_time(alert.resolved_at)} UTC"
        )
        verdict = st.radio("Verdict", list(views.VERDICTS), index=None, key=f"closed-verdict-{alert_id}",
                           horizontal=True)
        note = st.text_input("Note", key=f"closed-note-{alert_id}", placeholder="What you found",
                             max_chars=NOTE_MAX_CHARS)
        if st.button("Give verdict", key=f"judge-{alert_id}", disabled=stale or not ranger or verdict is None,
                     help=NOT_LIVE_HELP if stale else None):
            act("give the verdict", f"Verdict given by {ranger}: {verdict.lower()}.", data.resolve_alert, url,
                alert_id, viewer, views.VERDICTS[verdict], note)


@st.fragment(run_every=options.refresh_s)
def queue() -> None:
    """The open alerts, most urgent first, redrawn every `options.refresh_s` seconds."""
    login.require_live_sign_in(options)  # a refresh runs only this panel, not app.py's gate
    moment = as_of.current()
    # Live: the open alerts; at a chosen moment, those open then as they stood then. While the store
    # is busy, the ones this page last showed this viewer, as its role saw them (`data.LAST_ALERTS_READ`).
    data.start_stale_watch()
    now = moment or data.now(options, viewer, when_busy=data.LAST_ALERTS_READ)
    alerts = views.sort_alerts(data.alerts_at(url, viewer, moment, data.changes(url),
                                              when_busy=data.LAST_ALERTS_READ))
    stale_since = data.stale_read_at()
    if moment is None and stale_since is None and data.alert_count_changed(len(alerts)):
        st.rerun(scope="app")  # the navigation's count is stale: redraw the page with it
    if stale_since is not None:
        shown = "the open alerts" if moment is None else "the alerts open then"
        st.warning(views.stale_page_message(shown, "acknowledge, assign and resolve", stale_since,
                                            datetime.now(UTC), options.refresh_s),
                   icon=":material/hourglass_top:")
    ready = {"stale": "live" if stale_since is None else stale_since.isoformat()}
    as_of.banner(moment, "The queue shows the alerts open")
    message = st.session_state.pop(FLASH_KEY, None)
    if message:
        st.success(message)
    ranger = viewer.username
    if not role.handles_alerts:
        st.info(f"The {role.title.lower()} view shows alerts; rangers acknowledge and resolve them.")
    if not alerts:
        st.info("No open alerts." if moment is None else "No alert was open then.")
        markers.ready(markers.ALERTS_READY_ID, alerts=0, **ready)
        return
    counts = views.priority_counts(alerts)
    st.caption(
        f"{len(alerts)} open · "
        + " · ".join(f"{counts[step]} {palette.PRIORITY_LABELS[step]}" for step in palette.PRIORITY_STEPS)
    )
    shown = int(st.session_state.get(CARDS_SHOWN_KEY, QUEUE_CARDS))
    for alert in alerts[:shown]:
        alert_card(alert, now, ranger, stale=stale_since is not None)
    if len(alerts) > shown:
        st.button(
            f"More alerts as cards ({min(QUEUE_CARDS, len(alerts) - shown)} of {len(alerts) - shown} more)",
            key="more-alert-cards",
            on_click=more_cards,
            args=(shown,),
        )
    with st.expander(f"All {len(alerts)} open alerts as a table", expanded=len(alerts) > shown):
        st.dataframe(
            views.style_alert_table(views.alert_table(alerts, now, show_positions=role.exact_positions)),
            hide_index=True,
        )
    chosen(alerts, now, stale=stale_since is not None)
    markers.ready(markers.ALERTS_READY_ID, alerts=len(alerts), **ready)


def chosen(alerts: list[AlertView], now, stale: bool = False) -> None:  # noqa: ANN001
    """The chosen alert's details and evidence: track before and after, behaviour, battery, history
    (while `stale`, the details as last read only: the rest needs the store)."""
    by_id = {str(a.alert_id): a for a in alerts}
    alert_ids = list(by_id)
    selection.restore("alert", "alert", alert_ids, default=alert_ids[0])
    st.subheader("Evidence")
    st.selectbox(
        "Alert", alert_ids, key="alert", format_func=lambda alert_id: views.alert_label(by_id[alert_id])
    )
    alert = by_id[st.session_state["alert"]]
    selection.mirror("alert", str(alert.alert_id))
    st.markdown(f"#### {views.alert_type_label(alert.alert_type)}")
    position = views.format_position(alert.lat, alert.lon) if role.exact_positions else None
    st.markdown(
        f"**Animal:** {views.name_of(alert)} (collar {alert.device_id})  \n"
        f"**Raised:** {views.format_time(alert.time)} UTC, {views.format_age(alert.time, now)}  \n"
        f"**Position when raised:** {position or f'withheld from the {role.title.lower()} view'}  \n"
        f"**Priority:** {alert.priority} ({palette.priority_label(alert.priority)})  \n"
        f"**State:** {views.state_text(alert)}  \n"
        f"**Raised by:** {alert.source}" + (f" ({alert.occurrences} times)" if alert.occurrences > 1 else "")
    )
    if stale:
        st.caption("Not live: the track, the animal's state and the alert's history return with the store.")
    if alert.animal_id is not None:
        links = st.columns(2)
        with links[0]:
            st.page_link(
                navigation.live_map_page(),
                label="Show on the live map",
                icon=":material/my_location:",
                query_params={"animal": str(alert.animal_id)},
            )
        with links[1]:
            st.page_link(
                navigation.animals_page(),
                label="Open the animal's page",
                icon=":material/pets:",
                query_params={"animal": str(alert.animal_id)},
            )
        if not stale:
            evidence.alert_evidence(url, alert, role, EVIDENCE_WINDOW, now)
    if role.exact_positions and alert.evidence:
        with st.expander("Evidence the bridge recorded"):
            st.json(alert.evidence, expanded=2)
    if stale:
        return
    # a technician's role reads the technical side of each step beside the ranger's sentence
    history = views.alert_history_table(data.alert_events(url, alert.alert_id, viewer),
                                        technical=role.may(views.TECHNICAL_DETAIL_PERMISSION))
    if not history.empty:
        st.caption("History")
        st.dataframe(history, hide_index=True)


queue()

data.start_stale_watch()  # the lists under the queue: what this page showed last while the store is busy
resolved = data.alerts(url, viewer, ("resolved",), None if moment else RESOLVED_SHOWN, when_busy=data.LAST_ALERTS_READ)
if moment is not None:  # resolved by the moment shown
    resolved = [a for a in resolved if a.resolved_at is not None and a.resolved_at <= moment][:RESOLVED_SHOWN]
with st.expander(f"Resolved alerts ({len(resolved)} most recent)"):
    if resolved:
        st.dataframe(views.resolved_table(resolved), hide_index=True)
    else:
        st.caption("No alert resolved yet.")
if role.handles_alerts and moment is None:
    awaiting = data.alerts_awaiting_verdict(url, viewer, when_busy=data.LAST_ALERTS_READ)
    if awaiting:
        with st.expander(f"Closed by Tembo, awaiting your verdict ({len(awaiting)})"):
            st.caption("Tembo closed these when their condition cleared; was each one real? "
                       "Your verdict counts in the precision below.")
            for alert in awaiting[:QUEUE_CARDS]:
                verdict_card(alert, viewer.username, stale=data.stale_read_at() is not None)
verdicts = data.alert_verdicts(url, viewer)
if verdicts:
    with st.expander("Alert precision from rangers' verdicts"):
        st.dataframe(views.precision_table(verdicts), hide_index=True)
