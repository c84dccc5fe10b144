"""A gateway: one process per broker connection, executing commands through a BrokerClient adapter."""
