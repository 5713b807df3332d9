"""The core's own task types, registered as plugins like any other."""
