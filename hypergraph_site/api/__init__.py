"""Cross-cutting API pieces both apps use: API-key authentication and scopes, the error envelope and its handlers,
the broker check, and the health endpoints."""
