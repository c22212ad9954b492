"""The shipped models and demo recording that commands fall back on (paths relative to the repository root)."""

DEFAULT_GESTURE_MODEL = "models/gesture-egru"
DEFAULT_TEXT_MODEL = "models/shakespeare-egru"
DEFAULT_RECORDING = "models/demo-gestures.aedat4"  # `s2 data gesture-demo` writes it
