"""Orchestration: the asyncio pipeline, MQTT publishing, the embedded broker and the `s2` command line."""
