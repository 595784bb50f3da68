"""Sending e-mail: messages composed in the recipient's language (messages.py), written to the
outbox in the caller's transaction (outbox.py), delivered by a background sender (sender.py)
over SMTP or, in development without a server, to the log (transport.py).

It sits beside `db`: it knows the outbox table and the settings, nothing of users or the web."""
