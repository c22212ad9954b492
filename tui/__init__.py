"""The Textual terminal UI. Its only data path is MQTT; it imports nothing of ours but stream.schema."""
