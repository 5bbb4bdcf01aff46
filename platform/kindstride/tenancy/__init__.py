"""Tenants: their records, the scope every query runs in, and how a request finds its tenant."""
