"""Process concerns, apart from the site: accepting connections, tracking requests, signals, the
graceful stop, the port lock, hourly housekeeping, and the few places that reach under Tornado's
public API (`tornado_internals`). server.py tells the story; these modules do the work."""
