//! Pure domain types of Portcullis.
