"""Payments: gateways as plugins (a contract in the style of pretix's payment providers), webhooks."""
