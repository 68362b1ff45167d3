"""Delivery: `strata publish` keeps a TUF repository of extension images (publish.py, keys.py,
sysupdate.py), `strata update` brings a device's extensions up to date from one (client.py:
remote.py for the TUF metadata, fetch.py for the images, journal.py so that an interrupted
update is completed or rolled back, health.py, gc.py).

Everything that needs python-tuf, securesystemslib or cryptography imports them inside
functions: other commands never pay for them.
"""
