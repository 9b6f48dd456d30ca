//! Conversation settings: how an update moves read, cleared and removed positions.
