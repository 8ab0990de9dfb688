"""Ground-floor utilities: logging, events, distributed helpers, plugins, environment."""
