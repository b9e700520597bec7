"""The API layer of the local service: request dispatch, the route table and one module per endpoint group."""
