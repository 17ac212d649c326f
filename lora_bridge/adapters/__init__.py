"""Ways uplinks reach the bridge (HTTP webhook, file replay); each calls the service, never the tables."""
