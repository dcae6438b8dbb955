"""RideFlow: a real-time dispatch backend for ride-hailing and on-demand delivery."""

__version__ = "0.1.0"
