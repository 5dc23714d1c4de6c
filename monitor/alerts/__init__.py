"""Alerts: rules over new flags, campaigns and review decisions; delivery by webhook, e-mail and an Atom feed.

    config.py    alerts.yaml -> AlertingSettings (campaign settings, rules, channels, delivery, digest)
    rules.py     generate(): new alerts, each once (unique key), with one pending delivery per channel
    channels.py  send_webhook() (signed JSON POST), send_email() (SMTP, STARTTLS)
    deliver.py   deliver_pending(): due deliveries, retries with exponential backoff; the daily digest
    atom.py      render_atom(): the alerts as an Atom feed (served by the desk at /-/monitor/alerts.atom)
    digest.py    build_digest(): the last 24 hours as text and HTML
"""
