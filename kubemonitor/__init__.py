"""kubemonitor: a Kubernetes usage monitor and billing interface over Heapster metrics in InfluxDB 1.x."""
__version__ = "0.1.0"
