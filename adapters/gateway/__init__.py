"""The SOAP gateway: legacy department systems submit, query, fetch and acknowledge through a
WSDL-described web service (`/soap/exchange?wsdl` on the platform's HTTP server), each signed in
as its department with a WS-Security UsernameToken.

- `credentials`: the departments' gateway secrets (sealed with the platform key) and the
  `govbus adapters credentials ...` commands' store;
- `wsse`: checking a UsernameToken (digest, freshness, replay) and auditing refusals;
- `service`: the spyne service and its mapping of the bus's refusals to SOAP faults;
- `http`: `install(app, context)`, the entry point of the `govbus.http` group.

spyne (which runs on Python 3.11 only) is imported by `service` and `http.install` alone: this
package and `credentials`, `wsse` and `cli` can be imported without it.
"""
