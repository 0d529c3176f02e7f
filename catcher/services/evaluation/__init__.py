"""Rules Catcher evaluates itself: on the telemetry stream, and over past EFD data."""
