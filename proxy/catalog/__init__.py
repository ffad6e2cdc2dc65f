"""The catalog domain: the service handlers talk to, and (later) the simplified view."""
