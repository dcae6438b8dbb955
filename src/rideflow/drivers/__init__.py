"""Drivers: registration, status, positions."""
