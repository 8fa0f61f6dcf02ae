"""Mail authentication preflight: which SASL/PAM path each mail service uses, and whether it still holds."""
