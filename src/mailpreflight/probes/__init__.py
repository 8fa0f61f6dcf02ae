"""Reachability probes: DNS (dnspython), HTTP (requests), TCP, UDP. Probes never raise."""
