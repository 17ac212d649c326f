"""Notifications that leave the machine: an outbox table worked by the bridge's timer, never by ingest.

    config.py     who gets what (routes) and how to reach them (EarthRanger, webhook, SMTP, SMS gateway)
    outbox.py     queue once (unique keys), claim, retry with backoff, never send twice
    channels.py   one sender per channel, all through one injectable httpx client (SMTP through smtplib)
    sms_text.py   the alert's SMS made to fit one message in its real encoding (GSM 03.38 or UCS-2)
"""
