"""kindstride's built-in payment gateways, each a plugin of its own registered through the
`kindstride.plugins` entry point (see rules_plugins/README.md): a tenant enables the ones it uses.

Every gateway keeps the contract in kindstride.payments.contract: it talks to its gateway with the
tenant's own credentials, converts amounts at its edge, and never credits money itself.
"""
