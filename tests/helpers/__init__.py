"""Helpers shared by several test packages: real gateways and UIs as subprocesses, scripted engines and
gateways over real HTTP, simulated clinicians, and the store on SQLite and PostgreSQL."""
