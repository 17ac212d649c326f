"""Tembo's bridge service: network-server uplinks in, positions, behaviour, alerts and downlinks out.

Callers use `lora_bridge.service` (`Bridge`, `open_bridge`); see lora_bridge/README.md for the layers.
Kept import-free so that `lora_bridge.formatter` loads without the service's dependencies.
"""
