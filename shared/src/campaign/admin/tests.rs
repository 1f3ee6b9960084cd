//! The people's commands against the in-memory ports.
