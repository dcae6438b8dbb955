"""Identity: who calls (a `Principal` from an access token or an API key) and what they may do."""
