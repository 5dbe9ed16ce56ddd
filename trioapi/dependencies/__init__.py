"""Dependency injection: read endpoint signatures once, fill them in per connection.

``analysis`` turns an endpoint (and, recursively, its dependencies) into an
immutable ``EndpointPlan`` when the route is declared, refusing shapes that
cannot work. ``converters`` builds the per-parameter functions that turn strings
and JSON into typed values. ``solving`` walks a plan for one connection: it reads
and converts every parameter, reports all failures together, calls the
dependencies and enters their context managers on the connection's exit stack.
Nothing here is public API; users meet it through ``Depends`` and the markers of
``trioapi.params``.
"""
