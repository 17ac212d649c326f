"""Notifications that leave the machine: an outbox table worked by the bridge's timer, never by ingest.

    config.py     who gets what (routes) and how to reach them (EarthRanger, webhook, SMTP, SMS gateway)
    outbox.py     queue once (unique keys), claim, retry with backoff, never send twice
    channels.py   one sender per channel, all through one injectable httpx client (SMTP through smtplib)
"""
