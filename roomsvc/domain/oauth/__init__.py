"""OAuth for participants: flows, credentials and their refresh, as domain rules.

``service`` is what transports call; ``consent`` asks a participant and finishes the flow
it starts; ``credentials`` and ``refresh`` hold the stored credential and its single-flight
refresh; ``tokens`` joins them for reads, deletes and header injection; ``connectors``,
``registry`` and ``clients`` resolve which OAuth client a request names; ``flows`` and
``ports`` are the flow's values and the ports storage and the provider adapter implement.
"""
