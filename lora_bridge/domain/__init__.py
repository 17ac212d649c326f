"""Tembo's domain: what a decoded message means for devices, positions, activity, alerts and downlinks."""
