//! Group changes: who may make them, what they change, and the notification that records them.
