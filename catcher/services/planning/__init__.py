"""Triggers to planned actions: intake (decode, check, re-key), the series' owner, the planner."""
