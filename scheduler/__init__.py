"""Time-driven parts: the reconciler (and, later, schedules fired by `memq beat`)."""
