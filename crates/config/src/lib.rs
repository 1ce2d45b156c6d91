//! Portcullis configuration.
