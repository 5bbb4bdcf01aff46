"""One reader per activity file format (FIT, GPX, TCX); `kindstride.activities.parsing` chooses among them."""
