"""Upload engine: chunk planner, journal, exactly-once delivery, verification and progress."""
