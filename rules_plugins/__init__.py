"""kindstride's built-in plugins, registered through the `kindstride.plugins` entry points like any other."""
