//! SDK-HMAC-SHA256 request signing.
