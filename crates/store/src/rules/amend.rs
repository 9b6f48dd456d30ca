//! Amends (recall, edit, reactions): who may make them, when, and the event that records them.
