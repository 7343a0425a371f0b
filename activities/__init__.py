"""Temporal activities: step dispatch and model calls. Filled by the Temporal substrate."""
