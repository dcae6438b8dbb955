"""Load generators and benchmarks behind `make bench`."""
