"""Signal receivers of the care-team app."""
