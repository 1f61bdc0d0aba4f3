"""Fleets: one model into many canisters across subnets, and the fleet at a glance."""
