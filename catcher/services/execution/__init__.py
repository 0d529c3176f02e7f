"""Running actions: admission, the runner, the history publisher, operators' reads and sends."""
