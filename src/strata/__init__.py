"""Strata: systemd system and configuration extensions, end to end."""

__version__ = "0.1.0"
