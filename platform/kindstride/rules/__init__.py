"""The contract between challenges and rule plugins: activity facts in, verdicts and scores out."""
