"""Hostile-input and security tests: shell injection, path tricks, secrets in logs."""
