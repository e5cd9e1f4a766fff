//! IAM token authentication.
