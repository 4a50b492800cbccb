"""Asyncio client, postback receiver and test kit for the Dokobit Universal API."""
