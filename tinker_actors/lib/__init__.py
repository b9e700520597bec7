"""The module paths of the official SDKs' (0.6.3 and 0.38) ``tinker.lib`` that user code imports from.

Each module here re-exports our own objects under the official path (``tinker_actors.lib.public_interfaces``,
``.retry_handler``, ``.api_future_impl``, ``.experimental``); the official SDK's internal modules have no
counterpart (the porting guide lists them).
"""
