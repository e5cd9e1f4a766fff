//! The reqwest client for the DCS API.

/// Placeholder until the client lands.
pub struct DcsClient;
