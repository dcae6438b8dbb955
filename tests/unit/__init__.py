"""Pure logic, no servers."""
