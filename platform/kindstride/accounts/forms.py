"""Reading submitted forms: trimmed strings, with errors keyed by field name for the template."""

from flask import request


class FormErrors(dict):
    def add(self, field, message):
        self.setdefault(field, []).append(message)


def form_value(name, limit=1000):
    return (request.form.get(name) or "").strip()[:limit]
