"""mailpreflight: why a systemd-managed mail service will fail to start, before it bites."""

__version__ = "0.1.0"
