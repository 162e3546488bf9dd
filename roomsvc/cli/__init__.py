"""The ``roomsvc`` command line."""
