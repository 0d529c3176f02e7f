"""Rules InfluxDB evaluates: Flux tasks compiled and kept in step, and the trigger mirror."""
