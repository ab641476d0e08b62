"""The edge: HTTP server, upstream client, stores. The only place that does I/O."""
