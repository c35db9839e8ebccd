"""RequestHandler classes, one module per area of the site."""
