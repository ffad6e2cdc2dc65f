"""The 1NCE Management API client: token provider, products client, wire models, errors."""
