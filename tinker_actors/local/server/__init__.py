"""The HTTP layer of the local service: the asyncio + h11 server and fault injection rules."""
