"""Ground-floor utilities: logging, events, distributed helpers, environment."""
