"""The 1NCE Management API client: token provider, endpoint client, wire models, errors."""
