"""Alerts: rules asked of what a camera sees, their hysteresis, and where alerts go (docs/alerts.md)."""
