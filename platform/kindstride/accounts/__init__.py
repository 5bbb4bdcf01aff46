"""People: accounts per tenant, roles, sign-in by password or SSO, API tokens, platform operators."""
