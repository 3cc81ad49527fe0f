"""Adapters between department systems and the bus: the plugin API (`adapters.base`), the SOAP
gateway (`adapters.gateway`), SOAP push and pull with zeep, the front-end database and the
file drop. Composed into the platform through entry points only."""
