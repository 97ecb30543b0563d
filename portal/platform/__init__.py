"""The platform: what every part of the portal stands on and nothing of the portal's own.

Configuration (`config`), the database connection and its lock waits (`database`,
`extensions`), the clock, file and advisory locks (`locks`) and the scheduler's wake-up
(`wakeup`), the log formatter (`logs`), the escaping of untrusted text (`text`) and the HTTP
helpers shared by pages and API (`http`). Modules here import only each other and libraries:
the import contracts in pyproject.toml hold that.
"""
