"""The append-only, double-entry ledger: every money figure anywhere is a sum of its entries."""
