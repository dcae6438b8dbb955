"""Matching ride requests to drivers: candidate search, ranking, reservation."""
