//! A fake Discord gateway + REST API.
