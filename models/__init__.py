"""Models: the database layer (db.py), migrations (migrate.py) and one module per table family."""
