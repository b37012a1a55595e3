//! Hostile clients: connections that send nothing or a byte at a time, floods past the connection
//! caps, oversized cursors, subscribers creating channels, and malformed input. Each test holds the
//! server to still serving everyone else, and to a clear answer for the offender.

mod admin_flood;
mod connections;
mod input;
mod slow_reader;
mod storm;
mod tokens;
