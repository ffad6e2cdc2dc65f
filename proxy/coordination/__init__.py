"""Coordination over the backplane: turns, coordinated fills, rate gates, single flights."""
